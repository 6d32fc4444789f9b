"""Two-stage policy training on synthetic precomputed data, the loss terms and the .npz format.

Synthetic questions come in three types, told apart by the features:
A: every action answers right; B: only FULL_VISION does; C: COARSE and FULL do (NO fails).
Costs: NO 0, COARSE 100 tokens, FULL 300-500 tokens (normalised: coarse ~0.25, full ~1).
"""

import json

import numpy as np
import pytest
import torch

from seal.core.errors import InputError
from seal.policy.actions import Action
from seal.policy.config import PolicyConfig
from seal.policy.data import PolicyData, load_policy_data, save_policy_data
from seal.policy.features import PolicyInputs
from seal.policy.head import VoWHead
from seal.policy.loss import PolicyLoss
from seal.policy.policy import LearnedChooser, ValuePolicy
from seal.policy.train import stage1_targets, train_policy

A, B, C = 0, 1, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny MLPs train fastest (and most reproducibly) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n=300, types=(A, B, C), seed=0):
    rng = np.random.default_rng(seed)
    kind = rng.choice(types, n)
    x = rng.normal(0, 0.3, (n, 8)).astype(np.float32)
    x[np.arange(n), kind] += 2.0
    correct = np.zeros((n, 3), dtype=bool)
    correct[kind == A] = True
    correct[kind == B, 2] = True
    correct[kind == C, 1:] = True
    costs = np.zeros((n, 3), dtype=np.float32)
    costs[:, 1] = 100
    costs[:, 2] = rng.uniform(300, 500, n)
    data = PolicyData(x, 1.0 - correct, correct, costs, entropy=rng.uniform(0, 3, n), margin=rng.uniform(0, 1, n))
    return kind, data


def fit(data, **kw):
    base = dict(hidden_dim=32, dropout=0.0, stage1_steps=50, stage2_steps=400, batch_size=64, lr=1e-2,
                log_every=100, escalation_margin_threshold=None)  # no coarse margins in these data
    return train_policy(PolicyConfig(**{**base, **kw}), data)


def actions_of(head, data):
    inputs = PolicyInputs(data.features, np.zeros(len(data)), np.zeros(len(data)))
    return LearnedChooser(head).choose(inputs).actions


def rate(actions, kind, k, action):
    return float(np.mean(actions[kind == k] == int(action)))


@pytest.mark.parametrize("straight_through", [True, False], ids=["gumbel_st", "soft_mixture"])
def test_cost_aware_policy_spends_vision_only_where_needed(straight_through):
    kind, data = synthetic()
    result = fit(data, lambda_cost=0.3, use_straight_through=straight_through)
    acts = actions_of(result.head, data)
    assert rate(acts, kind, A, Action.NO_VISION) >= 0.9
    assert rate(acts, kind, B, Action.FULL_VISION) >= 0.9
    assert rate(acts, kind, C, Action.COARSE_VISION) >= 0.9
    assert result.summary["accuracy"] >= 0.95
    assert result.summary["avg_cost"] < 0.6 * float(data.costs[:, 2].mean())  # well below always-full
    stages = [e["stage"] for e in result.log]
    assert stages[0] == 1 and stages[-1] == 2 and {"task", "cost", "calibration"} <= set(result.log[-1])


def test_large_lambda_cost_turns_vision_off():
    kind, data = synthetic()
    result = fit(data, lambda_cost=5.0)
    assert np.mean(actions_of(result.head, data) == int(Action.NO_VISION)) >= 0.98
    assert result.summary["avg_cost"] < 0.02 * float(data.costs[:, 2].mean())


def test_zero_lambda_never_picks_cheaper_and_wrong():
    kind, data = synthetic()
    acts = actions_of(fit(data, lambda_cost=0.0).head, data)
    right = data.correct[np.arange(len(data)), acts]
    assert right.all()  # every question has a right action; cost does not tempt a wrong one


def test_binary_action_space_trains_without_coarse_measurements():
    kind, data = synthetic(types=(A, B))
    data.task_loss[:, 1] = np.nan  # coarse never run
    data.costs[:, 1] = np.nan
    result = fit(data, action_space="binary", lambda_cost=0.3)
    acts = actions_of(result.head, data)
    assert set(acts.tolist()) <= {0, 2}
    assert rate(acts, kind, A, Action.NO_VISION) >= 0.9 and rate(acts, kind, B, Action.FULL_VISION) >= 0.9
    with pytest.raises(InputError, match="COARSE_VISION"):
        fit(data, action_space="ternary")


def test_stage1_alone_imitates_its_target():
    kind, data = synthetic()
    full = fit(data, stage1_steps=150, stage2_steps=0, stage1_baseline_name="always_full")
    assert np.all(actions_of(full.head, data) == int(Action.FULL_VISION))
    oracle = fit(data, stage1_steps=300, stage2_steps=0, stage1_baseline_name="oracle")
    expected = np.array([0, 2, 1])[kind]  # cheapest right action per type
    assert np.mean(actions_of(oracle.head, data) == expected) >= 0.95
    thr = PolicyConfig(stage1_baseline_name="uncertainty_threshold", baseline_threshold=1.5)
    assert np.array_equal(stage1_targets(thr, data), np.where(data.entropy > 1.5, 2, 0))


def test_training_is_deterministic_per_seed():
    _, data = synthetic(n=120)
    heads = [fit(data, stage1_steps=5, stage2_steps=20, seed=s).head for s in (3, 3, 4)]
    x = torch.from_numpy(data.features)
    assert torch.equal(heads[0](x), heads[1](x)) and not torch.equal(heads[0](x), heads[2](x))


def test_train_from_npz_writes_a_loadable_head(tmp_path):
    kind, data = synthetic(n=200)
    path = save_policy_data(tmp_path / "train.npz", data)
    cfg = PolicyConfig(hidden_dim=16, dropout=0.0, stage1_steps=10, stage2_steps=30, lr=1e-2, log_every=10,
                       escalation_margin_threshold=None)
    result = train_policy(cfg, path, tmp_path / "run")
    out = tmp_path / "run"
    assert {"head.safetensors", "head.json", "policy_config.json", "train_log.jsonl", "train_summary.json"} <= \
        {p.name for p in out.iterdir()}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [10, 20, 30, 40] and [e["stage"] for e in log] == [1, 2, 2, 2]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["oracle"]["accuracy"] == 1.0 and summary["cost_model"]["c_coarse"] == pytest.approx(100.0)
    again = VoWHead.load(out)
    x = torch.from_numpy(data.features)
    torch.testing.assert_close(again(x), result.head(x), rtol=0, atol=0)
    policy = ValuePolicy.from_config(PolicyConfig(checkpoint=str(out)))
    decisions = policy.decide_batch(PolicyInputs(data.features, data.entropy, data.margin))
    assert [int(d.action) for d in decisions] == actions_of(result.head, data).tolist()


def test_policy_data_round_trip_and_errors(tmp_path):
    _, data = synthetic(n=10)
    data.ids = np.array([f"q{i}" for i in range(10)])
    again = load_policy_data(save_policy_data(tmp_path / "d.npz", data))
    np.testing.assert_array_equal(again.features, data.features)
    np.testing.assert_array_equal(again.correct, data.correct)
    assert again.ids.tolist() == data.ids.tolist() and again.entropy.shape == (10,)
    np.savez(tmp_path / "bad.npz", features=data.features, task_loss=data.task_loss, correct=data.correct)
    with pytest.raises(InputError, match=r"bad\.npz.*missing \['costs'\]"):
        load_policy_data(tmp_path / "bad.npz")
    with pytest.raises(InputError, match=r"task_loss: expected shape \(10, 3\)"):
        PolicyData(data.features, data.task_loss[:, :2], data.correct, data.costs)
    shared = PolicyData(data.features, data.task_loss, data.correct, [0, 100, 400])
    assert shared.costs.shape == (10, 3) and shared.costs[9, 2] == 400


def test_loss_terms():
    cfg = PolicyConfig(lambda_cost=0.5, lambda_cal=2.0, use_straight_through=False)
    loss = PolicyLoss(cfg)
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    task = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    costs = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    correct = torch.tensor([[False, True], [False, True]])
    terms = loss(logits, task, costs, correct)
    assert terms["task"].item() == pytest.approx((0.9 + 0.2) / 2)
    assert terms["cost"].item() == pytest.approx((0.1 + 0.8) / 2)
    assert terms["calibration"].item() == pytest.approx((0.9 ** 2 + 0.2 ** 2) / 2)  # chosen: no (wrong), full (right)
    expected = terms["task"] + 0.5 * terms["cost"] + 2.0 * terms["calibration"]
    assert terms["total"].item() == pytest.approx(expected.item())
    st = PolicyLoss(PolicyConfig(use_straight_through=True))
    w = st.action_weights(torch.zeros(64, 3, requires_grad=True))
    assert torch.all(w.detach().sum(-1) == 1) and set(w.detach().unique().tolist()) == {0.0, 1.0}
    w.sum().backward()  # straight-through: the hard sample still passes gradients
