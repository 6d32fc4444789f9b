"""ValuePolicy.decide: learned head argmax, reasons, the fallback rule, loading from a checkpoint."""

import math

import numpy as np
import pytest
import torch

from seal.core.errors import ConfigError
from seal.policy.actions import Action
from seal.policy.config import PolicyConfig
from seal.policy.features import feature_dim
from seal.policy.head import HeadSpec, VoWHead
from seal.policy.policy import ValuePolicy, summarize
from seal.vqa.model import TextPassOutput

D = 4


def _tp(entropy=0.2, margin=0.8):
    return TextPassOutput(pooled=torch.ones(D), last_hidden=torch.zeros(D), next_token_logits=torch.zeros(50),
                          entropy=entropy, margin=margin)


def _fixed_head(bias, space="ternary", mode="hidden_entropy_margin"):
    """A head whose logits are ``bias`` for every input."""
    head = VoWHead(HeadSpec(in_features=feature_dim(D, mode), hidden_dim=3, action_space=space, feature_mode=mode))
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.copy_(torch.tensor(bias))
    return head


def test_learned_decision_argmax_and_reason():
    policy = ValuePolicy.from_config(PolicyConfig(), head=_fixed_head([0.0, 0.0, 3.0]))
    d = policy.decide(_tp(entropy=2.3, margin=0.05))
    assert d.action is Action.FULL_VISION and not d.fallback_fired
    p_full = math.exp(3) / (2 + math.exp(3))
    assert d.probs[2] == pytest.approx(p_full) and sum(d.probs) == pytest.approx(1.0)
    assert d.reason.startswith("p(full)=0.91 > p(no)=0.05, p(coarse)=0.05; entropy 2.300, margin 0.050")
    assert d.features.shape == (D + 2,) and d.to_json()["action"] == "full"


def test_binary_head_never_gives_coarse():
    policy = ValuePolicy.from_config(PolicyConfig(), head=_fixed_head([1.0, 0.0], space="binary"))
    d = policy.decide(_tp())
    assert d.action is Action.NO_VISION and d.probs[1] == 0.0 and d.probs[0] > d.probs[2] > 0
    assert "coarse" not in d.reason and policy.escalation is None  # no COARSE to escalate from
    with pytest.raises(ConfigError, match="fallback_action"):
        ValuePolicy.from_config(PolicyConfig(fallback_mode="entropy", fallback_action="coarse"),
                                head=_fixed_head([1.0, 0.0], space="binary"))


@pytest.mark.parametrize("entropy, fires", [(1.0, False), (1.5, False), (1.5001, True), (4.0, True)])
def test_fallback_fires_exactly_when_entropy_exceeds_threshold(entropy, fires):
    cfg = PolicyConfig(fallback_mode="entropy", fallback_entropy_threshold=1.5, fallback_action="full")
    policy = ValuePolicy.from_config(cfg, head=_fixed_head([3.0, 0.0, 0.0]))  # chooses NO
    d = policy.decide(_tp(entropy=entropy, margin=0.0))  # margin is ignored in entropy mode
    assert d.chosen_action is Action.NO_VISION
    assert d.fallback_fired is fires
    assert d.action is (Action.FULL_VISION if fires else Action.NO_VISION)
    assert ("fallback: entropy" in d.reason) is fires
    if fires:
        assert d.reason.endswith(f"fallback: entropy {entropy:.3f} > 1.500 -> full")


def test_fallback_only_escalates_no_vision_and_respects_mode():
    coarse = PolicyConfig(baseline_name="always_coarse", fallback_mode="either", fallback_entropy_threshold=0.1)
    d = ValuePolicy.from_config(coarse).decide(_tp(entropy=5.0, margin=0.0))
    assert d.action is Action.COARSE_VISION and not d.fallback_fired
    margin = PolicyConfig(baseline_name="no_vision", fallback_mode="margin", fallback_margin_threshold=0.2,
                          fallback_action="coarse")
    policy = ValuePolicy.from_config(margin)
    assert policy.decide(_tp(entropy=9.0, margin=0.5)).action is Action.NO_VISION
    low = policy.decide(_tp(entropy=9.0, margin=0.1))
    assert low.action is Action.COARSE_VISION and low.fallback_fired and "margin 0.100 < 0.200" in low.reason
    either = PolicyConfig(baseline_name="no_vision", fallback_mode="either", fallback_entropy_threshold=1.0,
                          fallback_margin_threshold=0.2)
    fired = [ValuePolicy.from_config(either).decide(_tp(e, m)).fallback_fired
             for e, m in [(0.5, 0.5), (2.0, 0.5), (0.5, 0.1)]]
    assert fired == [False, True, True]
    off = ValuePolicy.from_config(PolicyConfig(baseline_name="no_vision")).decide(_tp(entropy=99.0, margin=0.0))
    assert off.action is Action.NO_VISION and not off.fallback_fired


def test_summarize_reports_fallback_rate():
    cfg = PolicyConfig(baseline_name="no_vision", fallback_mode="entropy", fallback_entropy_threshold=1.0)
    policy = ValuePolicy.from_config(cfg)
    stats = summarize([policy.decide(_tp(entropy=e)) for e in (0.5, 0.7, 2.0, 3.0)])
    assert stats == {"action_rate_no": 0.5, "action_rate_coarse": 0.0, "action_rate_full": 0.5,
                     "fallback_trigger_rate": 0.5, "n": 4}


def test_from_config_loads_checkpoint_and_reads_its_features(tmp_path):
    _fixed_head([0.0, 4.0, 0.0]).save(tmp_path / "head")
    policy = ValuePolicy.from_config(PolicyConfig(checkpoint=str(tmp_path / "head")))
    assert policy.name == "learned" and policy.decide(_tp()).action is Action.COARSE_VISION
    _fixed_head([0.0, 4.0], space="binary", mode="hidden").save(tmp_path / "hidden")
    head = ValuePolicy.from_config(PolicyConfig(checkpoint=str(tmp_path / "hidden"), fallback_mode="none"))
    assert head.inputs(_tp()).features.shape == (1, D)  # the head's own feature mode: no entropy, no margin
    assert head.decide(_tp()).action is Action.FULL_VISION
    baseline = ValuePolicy.from_config(PolicyConfig(baseline_name="no_vision"))
    assert baseline.inputs(_tp()).features.shape == (1, D + 2)  # what policy data records
    with pytest.raises(ConfigError, match="policy.checkpoint"):
        ValuePolicy.from_config(PolicyConfig(checkpoint=None))


def test_decide_batch_matches_decide():
    from seal.policy.features import PolicyInputs

    policy = ValuePolicy.from_config(PolicyConfig(), head=_fixed_head([0.5, 0.2, 0.1]))
    tps = [_tp(e, m) for e, m in [(0.1, 0.9), (2.0, 0.1)]]
    batch = PolicyInputs(np.stack([policy.inputs(t).features[0] for t in tps]), [0.1, 2.0], [0.9, 0.1])
    assert [d.reason for d in policy.decide_batch(batch)] == [policy.decide(t).reason for t in tps]
