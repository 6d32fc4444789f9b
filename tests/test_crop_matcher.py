"""The search model's crop matcher (search.vsm.crop_matcher / search.hit_check.crop_matcher) and its
recipe (training.crop_matcher_data / crop_matcher_recipe): shapes, words, files, the hit-check protocol,
data, a few training steps lowering the loss, and the real ``seal train crop-matcher``."""

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
from training.crop_matcher_config import CropMatcherTrainConfig, synth_kinds
from training.crop_matcher_data import CropMatcherDataConfig, build_crops
from training.crop_matcher_recipe import evaluate, loss_fn, make_collate, make_epochs

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
    with pytest.raises(InputError, match="expected a crop_matcher checkpoint with manifest.json"):
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
    cfg = CropMatcherDataConfig(background_per_scene=3, workers=1, cache_dir=str(tmp_path))
    vocab = [w for ws in synth_kinds().values() for w in ws]
    matcher = CropMatcherConfig(vocabulary=vocab, input_size=32)
    images, labels = build_crops(synth, cfg, matcher, 0, log=lambda m: None)
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8 and labels.shape == (len(images), len(vocab))
    objects = labels.sum(1) > 0
    assert set(labels[objects].sum(1).tolist()) == {3}  # one colour, one pattern, one shape each
    assert 0 < (~objects).sum() <= 2 * 3
    cached = list(tmp_path.glob("crop_*_train.npz"))
    assert len(cached) == 1
    again, _ = build_crops(synth, CropMatcherDataConfig(background_per_scene=3, workers=2, cache_dir=str(tmp_path)),
                           matcher, 0, log=lambda m: None)
    assert np.array_equal(images, again)  # same key for any worker count: read from the cache
    with pytest.raises(ConfigError, match="test"):
        build_crops(SynthConfig(split="test", n=1), cfg, matcher, 0)


def test_a_few_steps_lower_the_loss_and_the_report_reads_kinds(tmp_path):
    synth = SynthConfig(split="train", n=2, seed=5)
    ccfg = CropMatcherTrainConfig(matcher=CropMatcherConfig(input_size=32, widths=[8, 16], strides=[2, 2], embed_dim=8))
    assert len(ccfg.matcher.vocabulary) == sum(len(v) for v in synth_kinds().values())
    images, labels = build_crops(synth, CropMatcherDataConfig(workers=1, cache_dir=""), ccfg.matcher, 0,
                                 log=lambda m: None)
    torch.manual_seed(0)
    model = CropMatcher(ccfg.matcher)
    batch = make_collate(images, labels)(next(iter(make_epochs(len(images), 16, 0, hflip=True)(0))))
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
        make_epochs(3, 16, 0, True)


def test_seal_train_crop_matcher_writes_a_matcher_with_its_manifest(tmp_path):
    import yaml

    from seal.cli.main import main
    from seal.core.manifest import read_manifest

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "seed": 3,
        "synth": {"split": "train", "n": 2, "seed": 5, "long_side": 640, "min_objects": 8, "max_objects": 12},
        "crop_matcher_train": {"export_dir": str(tmp_path / "export"),
                               "matcher": {"input_size": 32, "widths": [8, 16], "strides": [2, 2], "embed_dim": 8},
                               "data": {"val_scenes": 1, "workers": 1, "cache_dir": ""},
                               "train": {"out_dir": str(tmp_path / "run"), "max_steps": 4, "batch_size": 8,
                                         "warmup_steps": 1, "log_every": 1}}}))
    assert main(["train", "crop-matcher", "--config", str(recipe)]) == 0
    manifest = read_manifest(tmp_path / "export", "crop_matcher")
    assert manifest.config == json.loads((tmp_path / "export" / CONFIG).read_text())
    assert set(manifest.files) == {CONFIG, WEIGHTS} and (tmp_path / "export" / "metrics.json").is_file()
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 3  # the run's record
    CropMatcher.from_pretrained(tmp_path / "export")


def test_the_vsm_recipe_keeps_its_matcher_inside_its_export():
    from seal.config import command_config, load

    with pytest.raises(ConfigError, match="crop_matcher_train.export_dir"):
        load([], ["crop_matcher_train.export_dir=elsewhere"], cls=command_config("train-vsm"))
