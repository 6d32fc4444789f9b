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
from search.hit_check.words import VQAWordCheck, HitCheckConfig
from training.vqa_data import render_scene

VQA_TINY = PROJECT_ROOT / "checkpoints" / "vqa_tiny"


def test_checks_of_a_name():
    cfg = HitCheckConfig()
    assert cfg.checks("dotted cross") == [("pattern", "dotted", "cross")]  # shapes are known, not checked
    assert cfg.checks("Red  Star") == [("color", "red", "star")]
    assert cfg.checks("umbrella") == [] and cfg.checks("red") == []
    assert cfg.checks("striped red ring") == [("pattern", "striped", "red ring"), ("color", "red", "striped ring")]
    with_shape = load([PROJECT_ROOT / "configs" / "verifier_shape.yaml"]).verifier
    assert with_shape.checks("dotted cross") == [("pattern", "dotted", "cross"), ("shape", "cross", "dotted object")]
    assert HitCheckConfig(kinds=with_shape.kinds).checks("red ring") == [
        ("color", "red", "ring"), ("shape", "ring", "red")]  # without noun_kinds the noun is not replaced
    assert cfg.applies_to("vsm") and not cfg.applies_to("oracle")
    assert not HitCheckConfig(enabled=False).applies_to("vsm")


@pytest.mark.parametrize("kwargs,match", [
    ({"attributes": {"color": ["red"]}}, "hit_check.attributes.color"),
    ({"attributes": {"size": ["big", "small"]}}, "hit_check.questions.size"),
    ({"replies": {"color": "It is {value}.", "pattern": "The {name} is {value}."}}, "hit_check.replies.color"),
    ({"attributes": {"color": ["red", "blue"], "pattern": ["red", "dotted"]}}, "two attribute kinds"),
    ({"noun_kinds": ["size"]}, "hit_check.noun_kinds"),
    ({"kinds": ["size"]}, "hit_check.kinds"),
    ({"kinds": []}, "hit_check.kinds"),
    ({"word_score": "max"}, "hit_check.word_score"),
    ({"contrast": {"shape": ["ring"]}}, "hit_check.contrast"),
    ({"contrast": {"shape": ["ring", "star"], "size": ["ring", "big"]}}, "hit_check.contrast"),
    ({"contrast_margin": 0.0}, "hit_check.contrast_margin"),
    ({"contrast_window": 9.0}, "contrast_window"),
    ({"model_path": " "}, "hit_check.model_path"),
    ({"crop_scale": 0.8}, "hit_check.crop_scale"),
    ({"min_context_px": 0}, "min_context_px"),
    ({"views": []}, "hit_check.views"),
    ({"views": ["identity", "spin"]}, "hit_check.views"),
    ({"views": ["hflip", "hflip"]}, "hit_check.views"),
])
def test_config_rejects_impossible_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HitCheckConfig(**kwargs)


def test_hit_checker_chains_the_contrast_check_before_the_vqa_llm():
    from search.config import SearchConfig
    from search.contrast import ContrastVerifier
    from search.hit_check.protocol import AllChecks
    from search.hit_check.words import hit_checker
    from tests.fakes import FakeLocalizer, FakeHitCheck

    vsm, oracle = FakeLocalizer({}), FakeLocalizer({})
    vsm.name, oracle.name = "vsm", "oracle"
    llm = FakeHitCheck({})
    cfg = load([PROJECT_ROOT / "configs" / "verifier_contrast.yaml"]).verifier
    assert HitCheckConfig().contrast == {}
    both = build_hit_check(cfg, SearchConfig(verify_threshold=0.4), vsm, llm)
    assert isinstance(both, AllChecks) and both.threshold == 0.4
    assert isinstance(both.verifiers[0], ContrastVerifier) and both.verifiers[0].localizer is vsm
    assert both.verifiers[1] is llm
    assert both.verifiers[0].variants("dotted cross")[:2] == ["dotted circle", "dotted square"]
    assert build_hit_check(cfg, SearchConfig(), oracle, llm) is None
    assert isinstance(build_hit_check(cfg, SearchConfig(), vsm, None), ContrastVerifier)
    assert build_hit_check(HitCheckConfig(contrast={}), SearchConfig(), vsm, llm) is llm
    assert build_hit_check(HitCheckConfig(contrast={}), SearchConfig(), vsm, None) is None


def test_the_checker_is_the_configured_vqa_model(tmp_path):
    """By default the checker the answering model's profile names is loaded as a second VQA LLM;
    ``hit_check.vqa_path`` naming the answering model checks with it (one model in memory); a
    missing one is an InputError naming the field."""
    from seal.agent.pipeline import Agent
    from seal.core.errors import InputError

    base = ["models.localizer=oracle", "policy.baseline_name=always_full"]
    own = Agent.from_config(load([], base + [f"hit_check.model_path={VQA_TINY}"]))
    assert own.verifier.vqa is own.vqa and own.verifier.cfg.checked_kinds == ["color", "pattern"]
    other = Agent.from_config(load([], base))
    assert other.verifier.vqa is not other.vqa and other.verifier.vqa.processor is not None
    assert other.verifier.cfg.checked_kinds == ["color", "pattern", "shape"]  # the checker's profile
    off = Agent.from_config(load([], base + [f"hit_check.model_path={tmp_path / 'none'}", "hit_check.enabled=false"]))
    assert off.verifier is None
    with pytest.raises(InputError, match="hit_check.model_path"):
        Agent.from_config(load([], base + [f"hit_check.model_path={tmp_path / 'none'}"]))


def test_the_checked_crop_follows_the_verifier_section_else_the_vwm():
    """A red 100-px square on white: cut at 1x the box (``verifier.crop_scale``) the crop is all
    red, at the VWM's 2x it has white margins."""
    from types import SimpleNamespace

    from PIL import Image, ImageDraw

    from vwm.layout import VWMConfig

    image = Image.new("RGB", (1000, 800), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([400, 300, 499, 399], fill=(255, 0, 0))
    box = (400, 300, 500, 400)

    def corner(cfg):
        verifier = VQAWordCheck(SimpleNamespace(vwm_config=VWMConfig(), processor=None), cfg, budget=_NoBudget())
        verifier.set_image(ImageSource(image))
        crop, _ = verifier._crop(box)
        return crop.getpixel((3, 3))

    assert corner(HitCheckConfig()) == (255, 255, 255)
    tight = corner(HitCheckConfig(crop_scale=1.0, min_context_px=10))
    assert tight[0] > 200 and tight[1] < 60 and tight[2] < 60


class _NoBudget:
    def resize(self, image, which):
        return image


@pytest.fixture(scope="module")
def shipped_verifier():
    from seal.vqa.model import VQAModel

    assert VQA_TINY.is_dir(), f"the shipped VQA model is missing: {VQA_TINY}"
    return VQAWordCheck(VQAModel.load(VQA_TINY))


@pytest.mark.parametrize("index", [100, 101, 102])
def test_shipped_model_accepts_the_target_and_rejects_its_near_misses(shipped_verifier, index):
    # a test-split scene as the benchmark stores it (JPEG round trip): its first target and the near
    # misses whose colour / pattern word differs (the checked word; shapes are not checked by default)
    sample = render_scene(SynthConfig(split="test", suite="vstar"), index, jpeg_roundtrip=True)
    target = sample.targets[0]
    keys = tuple(k for k in ATTRS if target.attrs[k] in target.name.split())
    word = next(k for k in keys if k != "shape")
    near = [o for o in sample.objects if is_near_miss(o.attrs, target.attrs, keys) and o.attrs[word] != target.attrs[word]]
    v = shipped_verifier
    assert isinstance(v, HitCheck)
    v.set_image(ImageSource(sample.image))
    assert v.check(target.name, xywh_to_xyxy(target.bbox)) >= 0.5, target.name
    for o in near:
        assert v.check(target.name, xywh_to_xyxy(o.bbox)) < 0.5, (target.name, o.name)
    assert v.check("umbrella", xywh_to_xyxy(target.bbox)) is None
    s = v.stats()
    assert s.calls == len(near) + 2 and s.abstained == 1 and s.vision_tokens > 0


def test_crop_views_average_the_value_distributions(shipped_verifier):
    """With one checked word (a colour name), two views give the mean of each view's probability,
    at one LLM call per view."""
    from PIL import Image

    from search.hit_check.words import CROP_VIEWS

    grad = Image.new("RGB", (4, 2))
    grad.putpixel((0, 0), (255, 0, 0))
    assert CROP_VIEWS["hflip"](grad).getpixel((3, 0)) == (255, 0, 0)
    assert CROP_VIEWS["vflip"](grad).getpixel((0, 1)) == (255, 0, 0)
    assert CROP_VIEWS["rot180"](grad).getpixel((3, 1)) == (255, 0, 0)
    sample = render_scene(SynthConfig(split="test", suite="vstar"), 100, jpeg_roundtrip=True)
    target = next(t for t in sample.targets if t.attrs["color"] in t.name.split())
    box = xywh_to_xyxy(target.bbox)

    def check(views):
        v = VQAWordCheck(shipped_verifier.vqa, HitCheckConfig(views=views))
        v.set_image(ImageSource(sample.image))
        return v.check(target.name, box), v.stats().llm_calls

    (one, calls1), (flipped, _), (both, calls2) = check(["identity"]), check(["hflip"]), check(["identity", "hflip"])
    assert both == pytest.approx((one + flipped) / 2) and (calls1, calls2) == (1, 2)


def test_verify_before_set_image_is_an_error(shipped_verifier):
    with pytest.raises(RuntimeError, match="set_image"):
        VQAWordCheck(shipped_verifier.vqa).check("red star", (0, 0, 10, 10))


def test_the_default_plan_asks_the_shipped_checker_as_it_was_trained():
    """The shipped VQA model's profile names the shipped checker; the checker's profile cuts its
    crops as its training did (its resolved config's ``vwm`` section) and checks the shape too;
    hits it checks are ranked (``select: auto``)."""
    from seal.core.config import read_yaml
    from seal.vqa.checker import plan_checker

    plan = plan_checker(load([]))
    assert plan.separate and plan.path.resolve() == (PROJECT_ROOT / "checkpoints" / "vqa_check_tiny").resolve()
    trained = read_yaml(plan.path / "config.yaml")["vwm"]
    assert (plan.config.crop_scale, plan.config.min_context_px) == (trained["crop_scale"], trained["min_context_px"])
    assert plan.config.checks("dotted cross") == [("pattern", "dotted", "cross"), ("shape", "cross", "dotted object")]
    search = load([]).search
    assert search.selection(checked=True) == "best" and search.selection(checked=False) == "first"
    assert search.compare_rejected
