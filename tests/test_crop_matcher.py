"""The search model's crop matcher (search.vsm.crop_matcher / crop_check) and its recipe
(training.crop_check_data / crop_check_recipe): shapes, words, files, the verifier protocol, data,
and a few training steps lowering the loss."""

import json

import numpy as np
import pytest
import torch

from eval.synth.config import SynthConfig
from seal.core.image_source import ImageSource
from search.hit_check.protocol import HitCheck
from search.hit_check.crop_matcher import CropMatcherCheck
from search.vsm.crop_matcher import CONFIG, WEIGHTS, CropMatcher, CropMatcherConfig, phrase_words
from seal.core.errors import ConfigError, InputError
from training.crop_check_data import CropCheckDataConfig, build_crops
from training.crop_check_recipe import CropCheckTrainConfig, evaluate, loss_fn, make_batches, synth_kinds

WORDS = ["red", "blue", "dotted", "solid", "star", "circle"]


def small_matcher(seed: int = 0) -> CropMatcher:
    torch.manual_seed(seed)
    return CropMatcher(CropMatcherConfig(vocabulary=WORDS, input_size=32, widths=[8, 16], strides=[2, 2],
                                         embed_dim=8)).eval()


def test_phrase_words_lowercases_splits_and_deduplicates():
    assert phrase_words("Red-star  red") == ["red", "star"]
    assert phrase_words("  ") == []


def test_shapes_and_the_conjunctive_probability():
    m = small_matcher()
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    pixels = m.normalize(torch.from_numpy(images))
    assert pixels.shape == (3, 3, 32, 32)
    assert m.embed_crops(pixels).shape == (3, 8)
    logits = m(pixels).detach()
    assert logits.shape == (3, len(WORDS))
    p = m.phrase_probability(images, "red umbrella star")  # umbrella: unknown, not judged
    expected = torch.sigmoid(logits[:, [0, 4]]).prod(1).double().numpy()
    assert p.shape == (3,) and np.allclose(p, expected, atol=1e-6)
    assert np.all(p <= torch.sigmoid(logits[:, 0]).numpy() + 1e-6)  # a product: never above one word alone
    assert m.phrase_probability(images, "umbrella") is None
    with pytest.raises(ValueError, match="uint8 images"):
        m.normalize(torch.zeros(2, 3, 32, 32))


def test_save_and_load_round_trip(tmp_path):
    m = small_matcher(1)
    m.save_pretrained(tmp_path / "cc")
    back = CropMatcher.from_pretrained(tmp_path / "cc")
    x = m.normalize(torch.from_numpy(np.full((2, 32, 32, 3), 90, dtype=np.uint8)))
    with torch.no_grad():
        assert torch.equal(m(x), back(x)) and back.cfg == m.cfg
    assert json.loads((tmp_path / "cc" / CONFIG).read_text())["vocabulary"] == WORDS


def test_broken_folders_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not a crop matcher folder"):
        CropMatcher.from_pretrained(tmp_path)
    small_matcher().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot load the crop matcher"):
        CropMatcher.from_pretrained(tmp_path)
    small_matcher().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / CONFIG).read_text())
    (tmp_path / CONFIG).write_text(json.dumps({**cfg, "widths": [4, 16]}))  # weights of another architecture
    with pytest.raises(InputError, match="cannot load"):
        CropMatcher.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs,match", [
    ({"vocabulary": ["red", "red"]}, "vocabulary"),
    ({"vocabulary": ["red star"]}, "vocabulary"),
    ({"widths": [8, 16], "strides": [2]}, "widths / strides"),
    ({"strides": [3, 1, 2, 1, 2, 1]}, "widths / strides"),
    ({"input_size": 8}, "input_size"),
    ({"crop_scale": 0.5}, "crop_scale"),
    ({"std": [0.2, 0.0, 0.2]}, "mean / std"),
])
def test_config_rejects_impossible_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CropMatcherConfig(**{"vocabulary": ["red"], **kwargs})
    with pytest.raises(ConfigError, match="empty"):
        CropMatcher(CropMatcherConfig())


def test_the_crop_check_reads_the_box_crop():
    from PIL import Image

    m = small_matcher()
    v = CropMatcherCheck(m)
    assert isinstance(v, HitCheck) and v.name == "crop"
    with pytest.raises(RuntimeError, match="before set_image"):
        v.check("red star", (0, 0, 10, 10))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    v.set_image(ImageSource(image))
    box = (100.0, 50.0, 130.0, 80.0)
    p = v.check("red star", box)
    crop = m.crop_images(image, [box])
    assert crop.shape == (1, 32, 32, 3)
    assert p == pytest.approx(float(m.phrase_probability(crop, "red star")[0]))
    assert v.check("umbrella", box) is None
    s = v.stats()
    assert (s.calls, s.abstained, s.llm_calls, s.vision_tokens) == (2, 1, 0, 0)
    v.set_image(ImageSource(image))
    assert v.stats().calls == 0


def test_the_builder_puts_the_localizers_crop_matcher_first():
    from search.hit_check.build import build_hit_check
    from search.hit_check.config import HitCheckConfig
    from tests.fakes import FakeLocalizer

    vsm = FakeLocalizer({})
    vsm.name, vsm.crop_matcher = "vsm", small_matcher()
    alone = build_hit_check(HitCheckConfig(), vsm)  # vqa: auto, and the crop matcher reads
    assert isinstance(alone, CropMatcherCheck) and alone.matcher is vsm.crop_matcher
    assert build_hit_check(HitCheckConfig(crop_matcher=False), vsm) is None  # no VQA loader given
    vsm.crop_matcher = None
    assert build_hit_check(HitCheckConfig(), vsm) is None


def test_crops_carry_their_objects_words_and_background_none(tmp_path):
    synth = SynthConfig(split="train", n=2, seed=3)
    cfg = CropCheckDataConfig(background_per_scene=3, workers=1, cache_dir=str(tmp_path))
    vocab = [w for ws in synth_kinds().values() for w in ws]
    matcher = CropMatcherConfig(vocabulary=vocab, input_size=32)
    images, labels = build_crops(synth, cfg, matcher, log=lambda m: None)
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8 and labels.shape == (len(images), len(vocab))
    objects = labels.sum(1) > 0
    assert set(labels[objects].sum(1).tolist()) == {3}  # one colour, one pattern, one shape each
    assert 0 < (~objects).sum() <= 2 * 3
    cached = list(tmp_path.glob("crop_*_train.npz"))
    assert len(cached) == 1
    again, _ = build_crops(synth, CropCheckDataConfig(background_per_scene=3, workers=2, cache_dir=str(tmp_path)),
                           matcher, log=lambda m: None)
    assert np.array_equal(images, again)  # same key for any worker count: read from the cache
    with pytest.raises(ConfigError, match="test"):
        build_crops(SynthConfig(split="test", n=1), cfg, matcher)


def test_a_few_steps_lower_the_loss_and_the_report_reads_kinds(tmp_path):
    synth = SynthConfig(split="train", n=2, seed=5)
    ccfg = CropCheckTrainConfig(matcher=CropMatcherConfig(input_size=32, widths=[8, 16], strides=[2, 2], embed_dim=8))
    assert len(ccfg.matcher.vocabulary) == sum(len(v) for v in synth_kinds().values())
    images, labels = build_crops(synth, CropCheckDataConfig(workers=1, cache_dir=""), ccfg.matcher,
                                 log=lambda m: None)
    torch.manual_seed(0)
    model = CropMatcher(ccfg.matcher)
    batch = next(iter(make_batches(images, labels, 16, 0, hflip=True)(0)))
    assert batch["images"].shape == (16, 32, 32, 3) and batch["labels"].shape == (16, len(ccfg.matcher.vocabulary))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(loss_fn(model, batch)["total"].detach())
    for _ in range(60):
        loss = loss_fn(model, batch)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss_fn(model, batch)["total"].detach()) < 0.5 * first
    report = evaluate(model.eval(), images, labels, synth_kinds())
    assert set(report["accuracy"]) == {"color", "pattern", "shape"}
    assert 0.0 <= report["name_beats_near_misses"] <= 1.0 and report["crops"] + report["background"] == len(images)
    with pytest.raises(ConfigError, match="batch_size"):
        make_batches(images[:3], labels[:3], 16, 0, True)


def test_the_vsm_recipe_needs_the_matchers_own_train_section():
    from seal.config import load
    from training.vsm_recipe import run

    cfg = load([], ["vsm_train.crop_check=true", "synth.n=1", "synth.split=train"])
    with pytest.raises(ConfigError, match="crop_check_train.train"):
        run(cfg, log=lambda m: None)
