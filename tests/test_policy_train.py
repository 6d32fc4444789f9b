"""Two-stage policy training on synthetic precomputed data, the loss terms and the .npz format.

Synthetic questions come in three types, told apart by the features:
A: every action answers right; B: only FULL_VISION does; C: COARSE and FULL do (NO fails).
Costs: NO 0, COARSE 100 tokens, FULL 300-500 tokens (normalised: coarse ~0.25, full ~1).
"""

import json

import numpy as np
import pytest
import torch

from seal.core.config import from_dict
from seal.core.errors import InputError
from seal.policy.actions import Action
from seal.policy.config import PolicyConfig
from seal.policy.data import PolicyData, load_policy_data, save_policy_data
from seal.policy.features import PolicyInputs
from seal.policy.head import VoWHead
from seal.policy.policy import LearnedChooser, ValuePolicy
from training.policy_config import PolicyTrainConfig, TrainPolicyConfig
from training.policy_loss import PolicyLoss
from training.policy_recipe import export, stage1_targets, train_policy

A, B, C = 0, 1, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny MLPs train fastest (and most reproducibly) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n=300, types=(A, B, C), seed=0):
    """(kind per question, PolicyData): 8 features, of which the last two stand for entropy and margin."""
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


def config(out_dir, seed=0, steps=450, **sections) -> TrainPolicyConfig:
    """``seal train policy``'s config: a small head, AdamW at a constant rate, no escalation (these data
    have no coarse margins); ``sections`` (``head``, ``policy_train``, ...) update its defaults."""
    base = {"seed": seed, "head": {"hidden_dim": 32, "dropout": 0.0}, "policy": {"escalation_margin_threshold": None},
            "policy_train": {"stage1_steps": 50},
            "train": {"out_dir": str(out_dir), "max_steps": steps, "batch_size": 64, "lr": 1e-2, "warmup_steps": 0,
                      "min_lr_ratio": 1.0, "grad_clip": 0.0, "betas": [0.9, 0.999], "log_every": 100,
                      "resume": False}}
    for name, fields in sections.items():
        base[name] = {**base.get(name, {}), **fields}
    return from_dict(TrainPolicyConfig, base)


def fit(data, tmp_path, **sections):
    return train_policy(config(tmp_path / "run", **sections), data)


def actions_of(head, data):
    inputs = PolicyInputs(data.features, np.zeros(len(data)), np.zeros(len(data)))
    return LearnedChooser(head).choose(inputs).actions


def rate(actions, kind, k, action):
    return float(np.mean(actions[kind == k] == int(action)))


@pytest.mark.parametrize("straight_through", [True, False], ids=["gumbel_st", "soft_mixture"])
def test_cost_aware_policy_spends_vision_only_where_needed(straight_through, tmp_path):
    kind, data = synthetic()
    result = fit(data, tmp_path, policy_train={"lambda_cost": 0.3, "use_straight_through": straight_through},
                 train={"log_every": 25})
    acts = actions_of(result.head, data)
    assert rate(acts, kind, A, Action.NO_VISION) >= 0.9
    assert rate(acts, kind, B, Action.FULL_VISION) >= 0.9
    assert rate(acts, kind, C, Action.COARSE_VISION) >= 0.9
    assert result.summary["accuracy"] >= 0.95
    assert result.summary["avg_cost"] < 0.6 * float(data.costs[:, 2].mean())  # well below always-full
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert "imitation" in log[0] and {"task", "cost", "calibration", "accuracy", "avg_cost"} <= set(log[-1])


def test_large_lambda_cost_turns_vision_off(tmp_path):
    kind, data = synthetic()
    result = fit(data, tmp_path, policy_train={"lambda_cost": 5.0})
    assert np.mean(actions_of(result.head, data) == int(Action.NO_VISION)) >= 0.98
    assert result.summary["avg_cost"] < 0.02 * float(data.costs[:, 2].mean())


def test_zero_lambda_never_picks_cheaper_and_wrong(tmp_path):
    kind, data = synthetic()
    acts = actions_of(fit(data, tmp_path, policy_train={"lambda_cost": 0.0}).head, data)
    right = data.correct[np.arange(len(data)), acts]
    assert right.all()  # every question has a right action; cost does not tempt a wrong one


def test_binary_action_space_trains_without_coarse_measurements(tmp_path):
    kind, data = synthetic(types=(A, B))
    data.task_loss[:, 1] = np.nan  # coarse never run
    data.costs[:, 1] = np.nan
    result = fit(data, tmp_path, head={"action_space": "binary"}, policy_train={"lambda_cost": 0.3})
    acts = actions_of(result.head, data)
    assert set(acts.tolist()) <= {0, 2}
    assert rate(acts, kind, A, Action.NO_VISION) >= 0.9 and rate(acts, kind, B, Action.FULL_VISION) >= 0.9
    with pytest.raises(InputError, match="COARSE_VISION"):
        fit(data, tmp_path, head={"action_space": "ternary"})


def test_stage1_alone_imitates_its_target(tmp_path):
    kind, data = synthetic()
    full = fit(data, tmp_path, steps=150, policy_train={"stage1_steps": 150, "stage1_baseline_name": "always_full"})
    assert np.all(actions_of(full.head, data) == int(Action.FULL_VISION))
    oracle = fit(data, tmp_path, steps=300, policy_train={"stage1_steps": 300, "stage1_baseline_name": "oracle"})
    expected = np.array([0, 2, 1])[kind]  # cheapest right action per type
    assert np.mean(actions_of(oracle.head, data) == expected) >= 0.95
    thr = config(tmp_path, policy={"baseline_threshold": 1.5},
                 policy_train={"stage1_baseline_name": "uncertainty_threshold"})
    assert np.array_equal(stage1_targets(thr, data), np.where(data.entropy > 1.5, 2, 0))


def test_training_is_deterministic_per_seed(tmp_path):
    _, data = synthetic(n=120)
    heads = [train_policy(config(tmp_path / str(i), seed=s, steps=25, policy_train={"stage1_steps": 5}), data).head
             for i, s in enumerate((3, 3, 4))]
    x = torch.from_numpy(data.features)
    assert torch.equal(heads[0](x), heads[1](x)) and not torch.equal(heads[0](x), heads[2](x))


def test_a_head_of_another_feature_mode_reads_its_columns(tmp_path):
    _, data = synthetic(n=120)
    hidden = fit(data, tmp_path, steps=20, head={"feature_mode": "hidden"}, policy_train={"stage1_steps": 5}).head
    assert hidden.spec.in_features == data.features.shape[1] - 2  # the entropy and margin columns left out
    np.testing.assert_array_equal(data.features_for("hidden_margin"), data.features[:, [0, 1, 2, 3, 4, 5, 7]])


def test_export_writes_a_loadable_head_with_its_manifest(tmp_path):
    from seal.core.manifest import read_manifest
    from seal.policy.config import trained_lambda_cost
    kind, data = synthetic(n=200)
    path = save_policy_data(tmp_path / "train.npz", data)
    vqa = tmp_path / "vqa"  # the VQA model the data came from (a plain model folder: its files fingerprint it)
    vqa.mkdir()
    (vqa / "config.json").write_text("{}")
    cfg = config(tmp_path / "run", steps=40, head={"hidden_dim": 16},
                 policy_train={"stage1_steps": 10, "lambda_cost": 0.3, "export_dir": str(tmp_path / "head")},
                 train={"log_every": 10}, models={"vqa_path": str(vqa)})
    result = train_policy(cfg, path)
    out = export(result, cfg, ["seal", "train", "policy"])
    assert {"head.safetensors", "head.json", "manifest.json", "train_log.jsonl", "train_summary.json"} <= \
        {p.name for p in out.iterdir()}
    manifest = read_manifest(out, "policy_head")
    assert manifest.config == json.loads((out / "head.json").read_text())
    assert manifest.trained_against["vqa"]["path"] == str(vqa) and trained_lambda_cost(out) == 0.3
    assert manifest.recipe["command"] == ["seal", "train", "policy"] and manifest.recipe["trained_with"]["seed"] == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [10, 20, 30, 40] and "imitation" in log[0] and "task" in log[1]
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
    cfg = PolicyTrainConfig(lambda_cost=0.5, lambda_cal=2.0, use_straight_through=False)
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
    st = PolicyLoss(PolicyTrainConfig(use_straight_through=True))
    w = st.action_weights(torch.zeros(64, 3, requires_grad=True))
    assert torch.all(w.detach().sum(-1) == 1) and set(w.detach().unique().tolist()) == {0.0, 1.0}
    w.sum().backward()  # straight-through: the hard sample still passes gradients
