"""PolicyConfig validation, the policy recipes, and feature vectors from a text pass."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from seal.core.config import load_config
from seal.core.errors import ConfigError, InputError
from seal.policy.actions import Action, space_actions
from seal.policy.config import PolicyConfig
from seal.policy.features import PolicyInputs, build_features, feature_dim
from seal.vqa.model import TextPassOutput

ABLATIONS = Path(__file__).resolve().parents[1] / "configs" / "ablations"
BASELINES = sorted(ABLATIONS.glob("policy_baseline_*.yaml")) + [ABLATIONS / "policy_fallback_full.yaml"]


@dataclass
class _Root:
    seed: int = 0  # the run's seed, which a layer may set (the random baseline draws from it)
    policy: PolicyConfig = field(default_factory=PolicyConfig)


def _text_pass(d=6, v=10, entropy=1.2, margin=0.3):
    return TextPassOutput(pooled=torch.arange(d, dtype=torch.float32),
                          last_hidden=-torch.arange(d, dtype=torch.float32),
                          next_token_logits=torch.zeros(v), entropy=entropy, margin=margin)


@pytest.mark.parametrize("path", BASELINES, ids=[p.name for p in BASELINES])
def test_every_decision_layer_loads(path):
    assert isinstance(load_config(_Root, [path]).policy, PolicyConfig)


def test_layers_set_what_they_say():
    from seal.config import command_config, load

    rand = load_config(_Root, [ABLATIONS / "policy_baseline_random_matched.yaml"]).policy
    assert rand.baseline_name == "random_policy_matched" and rand.baseline_target_ratios == [0.4, 0.2, 0.4]
    binary = load([ABLATIONS / "policy_ablate_binary.yaml"], ["policy_train.lambda_cost=0.2"],
                  cls=command_config("train-policy"))
    assert binary.head.action_space == "binary" and binary.policy_train.lambda_cost == 0.2
    assert binary.head.hidden_dim == 256 and binary.policy_train.stage1_steps == 200  # the VoVNet recipe below it


@pytest.mark.parametrize("section, kwargs, needle", [
    ("head", {"feature_mode": "hidden_only"}, "feature_mode"),
    ("head", {"dropout": 1.0}, "dropout"),
    ("policy", {"baseline_name": "random_policy_matched"}, "baseline_target_ratios"),
    ("policy", {"baseline_name": "random_policy_matched", "baseline_target_ratios": [0.5, 0.2, 0.2]}, "sum to 1"),
    ("policy", {"baseline_name": "random_policy_matched", "baseline_target_ratios": [0.5, 0.5]}, "3 values"),
    ("policy", {"baseline_uncertainty": "margin", "baseline_threshold": 2.0}, "baseline_threshold"),
    ("policy", {"fallback_margin_threshold": 1.5}, "fallback_margin_threshold"),
    ("policy_train", {"lambda_cost": -0.1}, "lambda_cost"),
    ("policy_train", {"gumbel_tau": 0.0}, "gumbel_tau"),
    ("policy_train", {"stage1_steps": -1}, "stage1_steps"),
    ("policy_train", {"stage1_steps": 2000}, "train.max_steps"),
])
def test_invalid_config_names_the_field(section, kwargs, needle):
    from seal.config import command_config, load

    with pytest.raises(ConfigError, match=needle):
        load([], [f"{section}.{k}={v}" for k, v in kwargs.items()], cls=command_config("train-policy"),
             search_profile=False)


def test_a_binary_head_cannot_imitate_or_fall_back_to_coarse():
    from seal.config import command_config, load

    for extra in (["policy_train.stage1_baseline_name=always_coarse"],
                  ["policy_train.stage1_baseline_name=uncertainty_threshold", "policy.baseline_vision=coarse"]):
        with pytest.raises(ConfigError, match="ternary"):
            load([], ["head.action_space=binary", *extra], cls=command_config("train-policy"), search_profile=False)


def test_action_spaces():
    assert space_actions("binary") == (Action.NO_VISION, Action.FULL_VISION)
    assert [a.short for a in space_actions("ternary")] == ["no", "coarse", "full"]
    assert Action.from_short("coarse") is Action.COARSE_VISION and int(Action.FULL_VISION) == 2


@pytest.mark.parametrize("mode, extra", [("hidden", 0), ("hidden_entropy", 1), ("hidden_margin", 1),
                                         ("hidden_entropy_margin", 2)])
def test_feature_modes_dimensions(mode, extra):
    tp = _text_pass(d=6)
    feats = build_features(tp, mode)
    assert feats.shape == (6 + extra,) == (feature_dim(6, mode),) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[:6], np.arange(6))


def test_feature_values_are_normalised():
    tp = _text_pass(d=4, v=10, entropy=math.log(10) / 2, margin=0.3)
    feats = build_features(tp, "hidden_entropy_margin")
    np.testing.assert_allclose(feats[4:], [0.5, 0.3], rtol=1e-6)  # entropy / log V, margin
    assert build_features(tp, "hidden_margin")[-1] == pytest.approx(0.3)
    last = build_features(tp, "hidden", hidden_source="last")
    np.testing.assert_array_equal(last, -np.arange(4))


def test_policy_inputs_from_text_pass_and_bad_values():
    inputs = PolicyInputs.from_text_pass(_text_pass(entropy=2.5, margin=0.1), "hidden_entropy")
    assert inputs.features.shape == (1, 7) and inputs.entropy.tolist() == [2.5] and inputs.margin.tolist() == [0.1]
    with pytest.raises(InputError, match="non-finite"):
        build_features(_text_pass(entropy=float("nan")), "hidden_entropy")
    with pytest.raises(ValueError, match="entropy/margin"):
        PolicyInputs(np.zeros((3, 2)), np.zeros(2), np.zeros(3))
