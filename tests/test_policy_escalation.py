"""COARSE -> FULL escalation: the rule, its replay on policy data, who it applies to, and the agent
running it (both views booked, the search and VWM of FULL, forced actions untouched)."""

import numpy as np
import pytest
import torch

from seal.core.errors import ConfigError, InputError
from seal.policy.actions import Action
from seal.policy.config import PolicyConfig
from seal.policy.data import PolicyData
from seal.policy.escalation import Escalation, escalated_data, escalation_rate, option_margin
from seal.policy.head import HeadSpec, VoWHead
from seal.policy.policy import ValuePolicy
from tests.test_agent_fixtures import BACKBONE, OPTIONS, OTHER_QUESTION, QUESTION, make_config, trained_vqa, write_scene


def test_rule_reads_the_option_margin_or_the_refusal():
    rule = Escalation(0.5)
    assert option_margin([-1.0, -1.3, -2.0]) == pytest.approx(0.3)
    note = rule.check([-1.0, -1.3, -2.0], refused=False)
    assert note is not None and "0.300 < 0.500" in note
    assert rule.check([-1.0, -1.6], refused=True) is None  # options: the margin decides
    assert rule.check(None, refused=True) is not None and rule.check(None, refused=False) is None
    with pytest.raises(ValueError):
        Escalation(-0.1)
    with pytest.raises(ConfigError, match="escalation_margin_threshold"):
        PolicyConfig(escalation_margin_threshold=float("nan"))


def _data(margins):
    n = len(margins)
    correct = np.array([[False, False, True]] * n)
    correct[0, 1] = True  # the first question's coarse answer is right
    costs = np.tile(np.array([0.0, 64.0, 1000.0], np.float32), (n, 1))
    return PolicyData(np.zeros((n, 2), np.float32), 1.0 - correct, correct, costs,
                      coarse_margin=np.asarray(margins, np.float32))


def test_replay_gives_escalated_coarse_the_full_outcome_and_both_costs():
    data = _data([0.9, 0.1, np.nan])
    out = escalated_data(data, 0.5)
    assert out.correct[:, Action.COARSE_VISION].tolist() == [True, True, False]  # 2nd escalated, 3rd free form
    assert out.costs[:, Action.COARSE_VISION].tolist() == [64.0, 1064.0, 64.0]
    assert out.task_loss[1, Action.COARSE_VISION] == data.task_loss[1, Action.FULL_VISION]
    assert np.array_equal(out.costs[:, [0, 2]], data.costs[:, [0, 2]])  # other actions untouched
    assert data.costs[1, 1] == 64.0  # the input is not modified
    assert escalation_rate(data, 0.5) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="coarse_margin"):
        escalated_data(PolicyData(data.features, data.task_loss, data.correct, data.costs), 0.5)


def test_training_on_data_without_coarse_margins_says_how_to_fix_it(tmp_path):
    from seal.core.config import from_dict
    from training.policy_config import TrainPolicyConfig
    from training.policy_recipe import train_policy

    data = _data([0.9, 0.1, 0.2])
    plain = PolicyData(data.features, data.task_loss, data.correct, data.costs)

    def cfg(**policy):
        return from_dict(TrainPolicyConfig, {"head": {"hidden_dim": 4}, "policy": policy,
                                             "policy_train": {"stage1_steps": 1},
                                             "train": {"out_dir": str(tmp_path), "max_steps": 2, "batch_size": 2,
                                                       "resume": False}})

    with pytest.raises(InputError, match="recollect"):
        train_policy(cfg(), plain)
    summary = train_policy(cfg(), data).summary
    assert summary["escalation"] == {"margin_threshold": 0.5, "rate": pytest.approx(0.6667, abs=1e-4)}
    assert train_policy(cfg(escalation_margin_threshold=None), plain).summary["escalation"] is None


def _coarse_head(in_features):
    head = VoWHead(HeadSpec(in_features=in_features, hidden_dim=3, action_space="ternary",
                            feature_mode="hidden_entropy_margin"))
    with torch.no_grad():
        head.mlp[-1].weight.zero_()
        head.mlp[-1].bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # always COARSE
    return head


def test_only_the_learned_ternary_head_escalates():
    head = _coarse_head(6)
    assert ValuePolicy.from_config(PolicyConfig(), head=head).escalation.margin_threshold == 0.5
    assert ValuePolicy.from_config(PolicyConfig(escalation_margin_threshold=None), head=head).escalation is None
    assert ValuePolicy.from_config(PolicyConfig(baseline_name="always_coarse")).escalation is None


@pytest.fixture(scope="module")
def vqa():
    return trained_vqa()


def _agent(vqa, threshold):
    from seal.agent.pipeline import Agent

    cfg = make_config("policy.baseline_name=null", f"policy.escalation_margin_threshold={threshold}")
    policy = ValuePolicy.from_config(cfg.policy, head=_coarse_head(BACKBONE["text_hidden"] + 2))
    return Agent(vqa, policy, cfg)


def test_agent_escalates_an_unsure_coarse_answer_to_full(vqa, tmp_path):
    image, annotation = write_scene(tmp_path)
    runs = {}
    for threshold in ("null", "1000", "0"):
        agent = _agent(vqa, threshold)
        agent.set_image(image, annotation)
        runs[threshold] = agent.ask(QUESTION, OPTIONS)
    off, always, never = runs["null"], runs["1000"], runs["0"]
    for run in (off, never):
        assert run.action == "coarse" and run.escalation is None and not run.search
    assert always.action == "full" and "-> full" in always.escalation and always.escalation in always.reason
    assert always.decision.action is Action.COARSE_VISION  # the policy's own choice stays on record
    assert [e["type"] for e in always.events].index("escalation") < [e["type"] for e in always.events].index("refusal")
    assert always.targets and len(always.search) == len(always.targets) and always.vwm is not None
    views = agent.views
    assert always.ledger.vision_tokens_global == views.tokens("coarse") + views.tokens("full")
    assert always.to_json()["escalation"] == always.escalation

    forced = _agent(vqa, "1000")
    forced.set_image(image, annotation)
    assert forced.ask(QUESTION, OPTIONS, force_action="coarse").action == "coarse"  # forced: never changed


def test_free_form_coarse_refusal_escalates(vqa, tmp_path):
    image, annotation = write_scene(tmp_path)
    agent = _agent(vqa, "0")  # no margin without options: only the refusal counts
    agent.set_image(image, annotation)
    refused = agent.ask(QUESTION)
    assert refused.action == "full" and "refusal" in refused.escalation and refused.targets
    answered = agent.ask(OTHER_QUESTION)
    assert answered.action == "coarse" and answered.escalation is None
