"""Which model checks the hits (:func:`seal.vqa.checker.plan_checker`): profiles, precedence, errors.
Directories only: no model is loaded."""

from __future__ import annotations

import pytest

from seal.config import load
from seal.core.errors import ConfigError, InputError
from seal.vqa.checker import PROFILE, asking_config, plan_checker, read_profile
from search.hit_check.words import HitCheckConfig


def _model(path, profile: str | None = None):
    path.mkdir(parents=True)
    if profile is not None:
        (path / PROFILE).write_text(profile, encoding="utf-8")
    return path


def test_a_model_without_a_profile_checks_itself(tmp_path):
    """A user's own checkpoint (no verifier.yaml): it answers and checks, with the default kinds and
    the answer layout's crops."""
    own = _model(tmp_path / "llava")
    plan = plan_checker(load([], [f"models.vqa_path={own}"]))
    assert plan.path == own and not plan.separate and plan.source == "agent.vqa_path"
    assert plan.config.checked_kinds == ["color", "pattern"] and plan.config.crop_scale is None


def test_the_answering_profile_names_a_checker_whose_profile_says_how_to_ask(tmp_path):
    checker = _model(tmp_path / "checker", "crop_scale: 1.5\nmin_context_px: 40\nkinds: [color, shape]\n")
    answering = _model(tmp_path / "answer", "model_path: ../checker\n")
    plan = plan_checker(load([], [f"models.vqa_path={answering}"]))
    assert plan.separate and plan.path.resolve() == checker.resolve() and plan.source.endswith(PROFILE)
    assert (plan.config.crop_scale, plan.config.min_context_px, plan.config.kinds) == (1.5, 40, ["color", "shape"])
    # the verifier section's own values win over the profile's
    mine = plan_checker(load([], [f"models.vqa_path={answering}", "hit_check.kinds=[pattern]",
                                  "hit_check.crop_scale=2.0"]))
    assert (mine.config.kinds, mine.config.crop_scale, mine.config.min_context_px) == (["pattern"], 2.0, 40)


def test_precedence_flag_then_config_then_profile(tmp_path):
    _model(tmp_path / "checker")
    answering = _model(tmp_path / "answer", "model_path: ../checker\n")
    other, flag = _model(tmp_path / "other"), _model(tmp_path / "flag")
    cfg = load([], [f"models.vqa_path={answering}", f"hit_check.model_path={other}"])
    assert plan_checker(cfg).path == other and plan_checker(cfg).source == "hit_check.model_path"
    assert plan_checker(cfg, flag).path == flag and plan_checker(cfg, flag).source == "--verifier-model"
    same = plan_checker(load([], [f"models.vqa_path={answering}", f"hit_check.model_path={answering}"]))
    assert not same.separate  # naming the answering model: one model checks and answers


def test_a_missing_answering_model_plans_no_checker(tmp_path):
    plan = plan_checker(load([], [f"models.vqa_path={tmp_path / 'none'}"]))
    assert plan.path is None and not plan.separate


@pytest.mark.parametrize("profile, match", [
    ("model_path: ../gone\n", "not a directory"),
    ("- a list\n", "expected a mapping"),
    ("crop: 2\n", "unknown keys"),
    ("model_path: 3\n", "model_path"),
    ("kinds: [size]\n", "hit_check.kinds"),
    ("crop_scale: 0.5\n", "crop_scale"),
    ("kinds: [color\n", "unreadable"),
])
def test_bad_profiles_are_clear_errors(tmp_path, profile, match):
    answering = _model(tmp_path / "answer", profile)
    with pytest.raises((ConfigError, InputError), match=match) as err:
        plan_checker(load([], [f"models.vqa_path={answering}"]))
    assert PROFILE in str(err.value) or "hit_check.kinds" in str(err.value)


def test_asking_config_fills_only_unset_fields(tmp_path):
    checker = _model(tmp_path / "c", "noun_kinds: [shape]\nkinds: [shape, color]\n")
    assert read_profile(tmp_path) == {}
    filled = asking_config(HitCheckConfig(), checker)
    assert filled.checks("red ring") == [("color", "red", "ring"), ("shape", "ring", "red object")]
    kept = asking_config(HitCheckConfig(kinds=["color"], noun_kinds=[]), checker)
    assert (kept.kinds, kept.noun_kinds) == (["color"], [])


CHECKER_RECIPE = ["vqa_tiny.yaml", "vqa_tiny_ft.yaml", "vqa_tiny_rel.yaml", "vqa_tiny_check.yaml",
                  "vqa_check_tiny.yaml", "vqa_check_tight.yaml"]


def test_the_checker_recipe_exports_the_shipped_profile(tmp_path):
    """The documented checker recipe writes the profile the shipped checker carries (its crops from
    the recipe's vwm section); the answering model's recipe writes none."""
    from seal.core.paths import PROJECT_ROOT
    from training.vqa_recipe import write_checker_profile

    train = PROJECT_ROOT / "configs" / "train"
    cfg = load([train / f for f in CHECKER_RECIPE])
    assert write_checker_profile(tmp_path, cfg) == tmp_path / PROFILE
    assert read_profile(tmp_path) == read_profile(PROJECT_ROOT / "checkpoints" / "vqa_check_tiny")
    answering = load([train / f for f in CHECKER_RECIPE[:4]])
    assert write_checker_profile(tmp_path / "none", answering) is None


@pytest.mark.parametrize("fields, match", [(["vqa_train.checker_kinds=[size]"], "hit_check.kinds"),
                                           (["vqa_train.checker_noun_kinds=[shape]"], "checker_kinds")])
def test_checker_recipe_fields_are_checked(fields, match):
    with pytest.raises(ConfigError, match=match):
        load([], fields)
