"""Fixed baselines behind the Chooser interface."""

import numpy as np
import pytest

from seal.core.errors import ConfigError
from seal.policy.actions import Action
from seal.policy.baselines import BASELINES, make_baseline
from seal.policy.config import PolicyConfig
from seal.policy.features import PolicyInputs


def _inputs(n=5, entropy=None, margin=None):
    entropy = np.zeros(n) if entropy is None else np.asarray(entropy, dtype=float)
    margin = np.ones(len(entropy)) if margin is None else np.asarray(margin, dtype=float)
    return PolicyInputs(np.zeros((len(entropy), 3)), entropy, margin)


@pytest.mark.parametrize("name, action", [("always_full", Action.FULL_VISION), ("always_coarse", Action.COARSE_VISION),
                                          ("no_vision", Action.NO_VISION)])
def test_always_baselines_give_fixed_actions(name, action):
    choices = make_baseline(name, PolicyConfig(baseline_name=name)).choose(_inputs(6, entropy=np.linspace(0, 5, 6)))
    assert choices.actions.tolist() == [int(action)] * 6
    assert np.all(choices.probs[:, action] == 1.0) and np.all(choices.probs.sum(1) == 1.0)
    assert all(name in r for r in choices.reasons)


def test_random_policy_matched_ratios_and_determinism():
    ratios = [0.5, 0.2, 0.3]
    cfg = PolicyConfig(baseline_name="random_policy_matched", baseline_target_ratios=ratios)
    a = make_baseline("random_policy_matched", cfg, seed=7).choose(_inputs(2000)).actions
    freq = np.bincount(a, minlength=3) / 2000
    np.testing.assert_allclose(freq, ratios, atol=0.04)
    b = make_baseline("random_policy_matched", cfg, seed=7).choose(_inputs(2000)).actions
    assert np.array_equal(a, b)  # same seed, same draws
    assert not np.array_equal(a, make_baseline("random_policy_matched", cfg, seed=8).choose(_inputs(2000)).actions)


def test_random_policy_matched_never_draws_zero_ratio_action():
    cfg = PolicyConfig(baseline_name="random_policy_matched", baseline_target_ratios=[0.3, 0.0, 0.7])
    a = make_baseline("random_policy_matched", cfg).choose(_inputs(500)).actions
    assert Action.COARSE_VISION not in set(a.tolist()) and {0, 2} <= set(a.tolist())


def test_uncertainty_threshold_entropy_flips_at_threshold():
    cfg = PolicyConfig(baseline_name="uncertainty_threshold", baseline_uncertainty="entropy",
                       baseline_threshold=0.5, baseline_vision="full")
    choices = make_baseline("uncertainty_threshold", cfg).choose(_inputs(entropy=[0.1, 0.5, 0.5001, 3.0]))
    assert choices.actions.tolist() == [0, 0, 2, 2]  # strictly greater than the threshold fires
    assert "entropy 0.500 <= 0.500 -> no" in choices.reasons[1] and "> 0.500 -> full" in choices.reasons[2]


def test_uncertainty_threshold_margin_with_coarse_vision():
    cfg = PolicyConfig(baseline_name="uncertainty_threshold", baseline_uncertainty="margin",
                       baseline_threshold=0.3, baseline_vision="coarse")
    choices = make_baseline("uncertainty_threshold", cfg).choose(_inputs(entropy=[9, 9, 9], margin=[0.05, 0.3, 0.9]))
    assert choices.actions.tolist() == [1, 0, 0]  # low margin = uncertain; entropy is ignored


def test_smaller_threshold_means_more_vision():
    entropy = np.random.default_rng(0).uniform(0, 2, 300)
    rates = []
    for t in (0.1, 0.5, 1.0, 1.5):
        cfg = PolicyConfig(baseline_name="uncertainty_threshold", baseline_threshold=t)
        rates.append(np.mean(make_baseline("uncertainty_threshold", cfg).choose(_inputs(entropy=entropy)).actions == 2))
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]


def test_registry_and_unknown_name():
    assert set(BASELINES) == {"always_full", "always_coarse", "no_vision", "random_policy_matched",
                              "random_bucket_matched", "uncertainty_threshold"}
    with pytest.raises(ConfigError, match="baseline_name"):
        make_baseline("oracle", PolicyConfig())
