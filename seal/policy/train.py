"""Two-stage training of the value-of-vision head on precomputed per-question data.

The data (:mod:`seal.policy.data`) holds each question's text-pass features and, for every action,
the VQA model's task loss, correctness and measured vision tokens, so training never runs the LLM:

1. ``stage1_steps`` of cross-entropy towards a fixed target action (``stage1_baseline_name``: a
   baseline's action, e.g. ``always_full``, or ``oracle`` = the cheapest action that answered right).
2. ``stage2_steps`` of ``task + lambda_cost * cost + lambda_cal * calibration`` (:class:`PolicyLoss`).

With ``policy.escalation_margin_threshold`` set (ternary action space), the COARSE column is first
replayed under the COARSE -> FULL escalation (:func:`seal.policy.escalation.escalated_data`): the head
is trained on, and its summary reports, what a COARSE decision costs and answers in the agent.

``train_policy`` writes into ``out_dir`` (when given): ``head.safetensors`` + ``head.json``,
``policy_config.json`` (the resolved :class:`PolicyConfig`), ``train_log.jsonl`` and
``train_summary.json`` (final metrics on the training data).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seal.policy.actions import Action, space_actions
from seal.policy.baselines import make_baseline
from seal.policy.config import TRAINED_CONFIG_NAME, PolicyConfig
from seal.policy.cost import CostModel
from seal.policy.data import PolicyData, load_policy_data
from seal.policy.escalation import Escalation, escalated_data, escalation_rate
from seal.policy.features import PolicyInputs
from seal.policy.head import HeadSpec, VoWHead
from seal.policy.loss import PolicyLoss
from seal.policy.metrics import oracle_actions, policy_metrics
from seal.policy.policy import LearnedChooser


@dataclass
class TrainResult:
    head: VoWHead
    """The trained head, in eval mode."""
    log: list[dict]
    """One entry per logged step: ``step``, ``stage``, the loss terms, metrics on the training data."""
    summary: dict
    """Final metrics on the training data (see :func:`seal.policy.metrics.policy_metrics`), the
    cost model and the run time."""


def train_policy(cfg: PolicyConfig, data: PolicyData | str | Path, out_dir: str | Path | None = None) -> TrainResult:
    """Train a :class:`VoWHead` per ``cfg`` on ``data`` (a :class:`PolicyData` or an ``.npz`` path)."""
    if not isinstance(data, PolicyData):
        data = load_policy_data(data)
    escalation, rule = None, Escalation.from_config(cfg)
    if rule is not None:
        escalation = {"margin_threshold": rule.margin_threshold,
                      "rate": round(escalation_rate(data, rule.margin_threshold), 4)}
        data = escalated_data(data, rule.margin_threshold)
    actions = space_actions(cfg.action_space)
    cols = [int(a) for a in actions]
    data.require_actions(actions)
    torch.manual_seed(cfg.seed)  # init and Gumbel noise
    batches = torch.Generator().manual_seed(cfg.seed)

    cost_model = CostModel.from_measurements(data.costs, cfg.cost_normalizer)
    x = torch.from_numpy(data.features)  # (N, F)
    task_loss = torch.from_numpy(data.task_loss[:, cols])  # (N, A)
    costs = torch.from_numpy(data.costs[:, cols] / cost_model.scale).float()  # (N, A), normalised
    correct = torch.from_numpy(data.correct[:, cols])  # (N, A) bool
    target = torch.from_numpy(stage1_targets(cfg, data))  # (N,) column indices

    head = VoWHead(HeadSpec(in_features=x.shape[1], hidden_dim=cfg.hidden_dim, action_space=cfg.action_space,
                            feature_mode=cfg.feature_mode, hidden_source=cfg.hidden_source, dropout=cfg.dropout))
    head.set_standardization(x)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = PolicyLoss(cfg)

    log: list[dict] = []
    started = time.time()
    total_steps = cfg.stage1_steps + cfg.stage2_steps
    for step in range(1, total_steps + 1):
        stage = 1 if step <= cfg.stage1_steps else 2
        idx = torch.randint(len(data), (cfg.batch_size,), generator=batches)
        head.train()
        logits = head(x[idx])  # (B, A)
        if stage == 1:
            terms = loss_fn.imitation(logits, target[idx])
        else:
            terms = loss_fn(logits, task_loss[idx], costs[idx], correct[idx])
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        if step % cfg.log_every == 0 or step in (cfg.stage1_steps, total_steps):
            entry = {"step": step, "stage": stage, **{k: round(float(v.detach()), 6) for k, v in terms.items()}}
            log.append({**entry, **evaluate_head(head, data)})

    head.eval()
    oracle = oracle_actions(data, actions)
    summary = {"steps": total_steps, **evaluate_head(head, data), "cost_model": cost_model.to_json(),
               "oracle": policy_metrics(oracle, _one_hot(oracle), data), "escalation": escalation,
               "seconds": round(time.time() - started, 3)}
    if out_dir is not None:
        _write_outputs(Path(out_dir), cfg, head, log, summary)
    return TrainResult(head, log, summary)


def stage1_targets(cfg: PolicyConfig, data: PolicyData) -> np.ndarray:
    """(N,) int64 head-column index of each question's stage-1 target action."""
    actions = space_actions(cfg.action_space)
    name = cfg.stage1_baseline_name
    if name == "oracle":
        chosen = oracle_actions(data, actions)
    else:
        if name == "uncertainty_threshold":
            data.require_signals()
        nan = np.full(len(data), np.nan)
        inputs = PolicyInputs(data.features, nan if data.entropy is None else data.entropy,
                              nan if data.margin is None else data.margin)
        chosen = make_baseline(name, cfg).choose(inputs).actions
    column = {int(a): i for i, a in enumerate(actions)}
    outside = sorted({Action(int(a)).name for a in chosen if int(a) not in column})
    if outside:
        raise ValueError(f"stage-1 target {name!r} chose {outside}, outside the {cfg.action_space} action space")
    return np.asarray([column[int(a)] for a in chosen], dtype=np.int64)


def evaluate_head(head: VoWHead, data: PolicyData) -> dict:
    """Metrics of the head's argmax actions on ``data`` (eval mode; restores the previous mode)."""
    was_training = head.training
    choices = LearnedChooser(head).choose(PolicyInputs(data.features, np.zeros(len(data)), np.zeros(len(data))))
    head.train(was_training)
    return policy_metrics(choices.actions, choices.probs, data)


def _one_hot(actions: np.ndarray) -> np.ndarray:
    out = np.zeros((len(actions), 3))
    out[np.arange(len(actions)), actions] = 1.0
    return out


def _write_outputs(out: Path, cfg: PolicyConfig, head: VoWHead, log: list[dict], summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    head.save(out)
    (out / TRAINED_CONFIG_NAME).write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    with (out / "train_log.jsonl").open("w", encoding="utf-8") as f:
        for entry in log:
            f.write(json.dumps(entry) + "\n")
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
