"""The VQA LLM as the search's hit checker (search.hit_check.words): name parsing, config checks, and the
shipped VQA model telling test-split targets from their near misses."""

import pytest

from eval.synth.config import SynthConfig
from eval.synth.scene import ATTRS, is_near_miss
from seal.core.geometry import xywh_to_xyxy
from seal.core.image_source import ImageSource
from search.hit_check.protocol import HitCheck
from seal.core.paths import PROJECT_ROOT
from seal.config import load
from seal.core.errors import ConfigError
from search.hit_check.config import HitCheckConfig
from search.hit_check.words import VQAWordCheck
from training.vqa_data import render_scene

VQA_TINY = PROJECT_ROOT / "checkpoints" / "vqa_tiny"


def test_checks_of_a_name():
    cfg = HitCheckConfig()
    assert cfg.checks("dotted cross") == [("pattern", "dotted", "cross")]  # shapes are known, not checked
    assert cfg.checks("Red  Star") == [("color", "red", "star")]
    assert cfg.checks("umbrella") == [] and cfg.checks("red") == []
    assert cfg.checks("striped red ring") == [("pattern", "striped", "red ring"), ("color", "red", "striped ring")]
    with_shape = load([PROJECT_ROOT / "configs" / "ablations" / "hit_check_shape.yaml"]).hit_check
    assert with_shape.checks("dotted cross") == [("pattern", "dotted", "cross"), ("shape", "cross", "dotted object")]
    assert HitCheckConfig(kinds=with_shape.kinds).checks("red ring") == [
        ("color", "red", "ring"), ("shape", "ring", "red")]  # without noun_kinds the noun is not replaced
    assert cfg.applies_to("vsm") and not cfg.applies_to("oracle")
    assert not HitCheckConfig(enabled=False).applies_to("vsm")


@pytest.mark.parametrize("kwargs,match", [
    ({"vocabulary": {"attributes": {"color": ["red"]}, "questions": {}, "replies": {}}}, "attributes.color"),
    ({"vocabulary": {"attributes": {"size": ["big", "small"]}, "questions": {}, "replies": {}}}, "questions.size"),
    ({"vocabulary": {"attributes": {"color": ["red", "blue"]}, "questions": {"color": "{name}?"},
                     "replies": {"color": "It is {value}."}}}, "replies.color"),
    ({"vocabulary": {"attributes": {"color": ["red", "blue"], "pattern": ["red", "dotted"]},
                     "questions": {"color": "{name}", "pattern": "{name}"},
                     "replies": {"color": "{name} {value}", "pattern": "{name} {value}"}}}, "two attribute kinds"),
    ({"vocabulary": {"words": {}}}, "unknown keys"),
    ({"noun_kinds": ["size"]}, "hit_check.noun_kinds"),
    ({"kinds": ["size"]}, "hit_check.kinds"),
    ({"kinds": []}, "hit_check.kinds"),
    ({"vqa_path": " "}, "hit_check.vqa_path"),
    ({"crop_scale": 0.8}, "hit_check.crop_scale"),
    ({"min_context_px": 0}, "min_context_px"),
])
def test_config_rejects_impossible_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HitCheckConfig(**kwargs)


def test_the_checking_vqa_model_is_the_answering_one_unless_named(tmp_path):
    """``hit_check.vqa_path`` null: the answering model reads the words (one model in memory); a named
    checkpoint is loaded once, beside it; a missing one is an InputError naming the field."""
    from seal.agent.pipeline import Agent
    from seal.core.errors import InputError

    base = ["models.localizer=oracle", "policy.baseline_name=always_full"]
    agent = Agent.from_config(load([], base))
    own, settings = agent._hit_check_model(None)
    assert own is agent.vqa and settings == {}
    named, _ = agent._hit_check_model(str(VQA_TINY))
    assert named is not agent.vqa and agent._hit_check_model(str(VQA_TINY))[0] is named
    with pytest.raises(InputError, match="hit_check.vqa_path"):
        agent._hit_check_model(str(tmp_path / "none"))


def test_the_checked_crop_follows_the_section_else_the_vwm():
    """A red 100-px square on white: cut at 1x the box (``hit_check.crop_scale``) the crop is all
    red, at the VWM's 2x it has white margins."""
    from types import SimpleNamespace

    from PIL import Image, ImageDraw

    from vwm.layout import VWMConfig

    image = Image.new("RGB", (1000, 800), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([400, 300, 499, 399], fill=(255, 0, 0))
    box = (400, 300, 500, 400)

    def corner(cfg):
        check = VQAWordCheck(SimpleNamespace(vwm_config=VWMConfig(), processor=None), cfg, budget=_NoBudget())
        check.set_image(ImageSource(image))
        crop, _ = check._crop(box)
        return crop.getpixel((3, 3))

    assert corner(HitCheckConfig()) == (255, 255, 255)
    tight = corner(HitCheckConfig(crop_scale=1.0, min_context_px=10))
    assert tight[0] > 200 and tight[1] < 60 and tight[2] < 60


class _NoBudget:
    def resize(self, image, which):
        return image


@pytest.fixture(scope="module")
def shipped_check():
    from seal.vqa.model import VQAModel

    assert VQA_TINY.is_dir(), f"the shipped VQA model is missing: {VQA_TINY}"
    return VQAWordCheck(VQAModel.load(VQA_TINY))


@pytest.mark.parametrize("index", [100, 101, 102])
def test_shipped_model_accepts_the_target_and_rejects_its_near_misses(shipped_check, index):
    # a test-split scene as the benchmark stores it (JPEG round trip): its first target and the near
    # misses whose colour / pattern word differs (the checked word; shapes are not checked by default)
    sample = render_scene(SynthConfig(split="test", suite="vstar"), index, jpeg_roundtrip=True)
    target = sample.targets[0]
    keys = tuple(k for k in ATTRS if target.attrs[k] in target.name.split())
    word = next(k for k in keys if k != "shape")
    near = [o for o in sample.objects if is_near_miss(o.attrs, target.attrs, keys) and o.attrs[word] != target.attrs[word]]
    v = shipped_check
    assert isinstance(v, HitCheck)
    v.set_image(ImageSource(sample.image))
    assert v.check(target.name, xywh_to_xyxy(target.bbox)) >= 0.5, target.name
    for o in near:
        assert v.check(target.name, xywh_to_xyxy(o.bbox)) < 0.5, (target.name, o.name)
    assert v.check("umbrella", xywh_to_xyxy(target.bbox)) is None
    s = v.stats()
    assert s.calls == len(near) + 2 and s.abstained == 1 and s.vision_tokens > 0


def test_check_before_set_image_is_an_error(shipped_check):
    with pytest.raises(RuntimeError, match="set_image"):
        VQAWordCheck(shipped_check.vqa).check("red star", (0, 0, 10, 10))


def test_checked_hits_are_ranked_by_default():
    search = load([]).search
    assert search.selection(checked=True) == "best" and search.selection(checked=False) == "first"
    assert search.compare_rejected
