"""The one hit-check builder (:func:`search.hit_check.build.build_hit_check`): which checks a search
gets, when the VQA LLM is loaded, and how a checking model's recorded settings fill the section."""

from __future__ import annotations

import pytest

from search.hit_check.build import build_hit_check, uses_vqa
from search.hit_check.config import HitCheckConfig
from search.hit_check.crop_matcher import CropMatcherCheck
from search.hit_check.protocol import AllChecks
from search.hit_check.words import VQAWordCheck
from seal.core.errors import ConfigError


class _Localizer:
    def __init__(self, name: str = "vsm", crop_matcher=None) -> None:
        self.name, self.crop_matcher = name, crop_matcher


class _Matcher:
    def known(self, phrase):
        return True


class _VQA:
    processor = None
    vwm_config = None


def _loader(calls: list):
    def load(path):
        calls.append(path)
        return _VQA(), {"kinds": ["shape", "color"], "noun_kinds": ["shape"], "crop_scale": 1.5}
    return load


def test_the_crop_matcher_alone_checks_by_default_and_the_vqa_llm_is_not_loaded():
    calls: list = []
    check = build_hit_check(HitCheckConfig(), _Localizer(crop_matcher=_Matcher()), _loader(calls))
    assert isinstance(check, CropMatcherCheck) and calls == []


def test_without_a_crop_matcher_the_answering_vqa_llm_checks_as_its_checkpoint_says(monkeypatch):
    calls: list = []
    monkeypatch.setattr("search.hit_check.words.VisionBudget", lambda cfg, processor: None)
    check = build_hit_check(HitCheckConfig(), _Localizer(), _loader(calls))
    assert isinstance(check, VQAWordCheck) and calls == [None]
    # the checkpoint's recorded settings fill the unset fields only
    assert (check.cfg.kinds, check.cfg.noun_kinds, check.cfg.crop_scale) == (["shape", "color"], ["shape"], 1.5)
    assert check.cfg.checks("red ring") == [("color", "red", "ring"), ("shape", "ring", "red object")]
    mine = build_hit_check(HitCheckConfig(kinds=["color"], vqa_path="elsewhere"), _Localizer(), _loader(calls))
    assert mine.cfg.kinds == ["color"] and calls[-1] == "elsewhere"


def test_vqa_always_adds_the_llm_behind_the_crop_matcher(monkeypatch):
    monkeypatch.setattr("search.hit_check.words.VisionBudget", lambda cfg, processor: None)
    check = build_hit_check(HitCheckConfig(vqa="always", threshold=0.4), _Localizer(crop_matcher=_Matcher()),
                            _loader([]))
    assert isinstance(check, AllChecks) and check.name == "crop+vqa_words" and check.threshold == 0.4


@pytest.mark.parametrize("cfg, localizer", [
    (HitCheckConfig(enabled=False), _Localizer(crop_matcher=_Matcher())),
    (HitCheckConfig(), _Localizer("oracle", crop_matcher=_Matcher())),  # the oracle is not checked
    (HitCheckConfig(crop_matcher=False, vqa="never"), _Localizer(crop_matcher=_Matcher())),
])
def test_no_check_when_the_section_does_not_apply(cfg, localizer):
    calls: list = []
    assert build_hit_check(cfg, localizer, _loader(calls)) is None and calls == []
    assert not uses_vqa(cfg, localizer)


@pytest.mark.parametrize("override, match", [
    ({"kinds": ["size"]}, "hit_check.kinds"), ({"crop_scale": 0.5}, "crop_scale"),
    ({"vqa": "sometimes"}, "hit_check.vqa"), ({"floor": 0.6}, "hit_check.floor"), ({"zoom": 9.0}, "hit_check.zoom"),
    ({"per_node": 0}, "per_node"),
    ({"vocabulary": {"attributes": {"color": ["red"]}, "questions": {}, "replies": {}}}, "distinct values"),
])
def test_impossible_sections_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        HitCheckConfig(**override)
