"""``seal train policy``: collect the value-of-vision head's data (or reuse it), train the head with the
one loop, export it.

The data (:mod:`seal.policy.data`, collected by :mod:`training.policy_data`) hold each question's
text-pass features and, for every action, the VQA model's task loss, correctness and measured
vision tokens, so training never runs the LLM. The loop's ``train.max_steps`` are two stages:

1. the first ``policy_train.stage1_steps``: cross-entropy towards a fixed target action
   (``stage1_baseline_name``: a baseline's action, e.g. ``always_full``, or ``oracle`` = the
   cheapest action that answered right);
2. the rest: ``task + lambda_cost * cost + lambda_cal * calibration`` (:class:`PolicyLoss`).

With ``policy.escalation_margin_threshold`` set (ternary head), the COARSE column is first replayed
under the COARSE -> FULL escalation (:func:`seal.policy.escalation.escalated_data`): the head is
trained on, and its summary reports, what a COARSE decision costs and answers in the agent.

The export (``policy_train.export_dir``) holds ``head.safetensors`` + ``head.json``, the manifest
(kind ``policy_head``, config = ``head.json``'s content, trained against ``models.vqa_path``, the
training settings in ``recipe.trained_with``), ``train_log.jsonl`` and ``train_summary.json``
(final metrics on the training data).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from seal.core.manifest import fingerprint
from seal.core.paths import resolve_dir
from seal.policy.actions import Action, space_actions
from seal.policy.baselines import make_baseline
from seal.policy.cost import CostModel
from seal.policy.data import PolicyData, load_policy_data, save_policy_data
from seal.policy.escalation import Escalation, escalated_data, escalation_rate
from seal.policy.features import PolicyInputs
from seal.policy.head import HeadSpec, VoWHead
from seal.policy.metrics import oracle_actions, policy_metrics
from seal.policy.policy import LearnedChooser
from training.policy_config import TrainPolicyConfig
from training.policy_loss import PolicyLoss


@dataclass
class TrainResult:
    head: VoWHead
    """The trained head, in eval mode."""
    summary: dict
    """Final metrics on the training data (see :func:`seal.policy.metrics.policy_metrics`), the
    cost model, the escalation replayed and the run time."""


def train_policy(cfg: TrainPolicyConfig, data: PolicyData | str | Path) -> TrainResult:
    """Train a :class:`VoWHead` (``cfg.head``) on ``data`` (a :class:`PolicyData` or an ``.npz`` path)
    with :func:`training.loop.train` (``cfg.train``; its log, state and summary in ``train.out_dir``).

    The head is initialised from ``cfg.seed`` and its dropout and Gumbel noise continue that random
    stream; its minibatches are drawn with replacement by a generator of their own, seeded alike.
    """
    from training.distributed import num_processes
    from training.loop import seed_everything, train

    if not isinstance(data, PolicyData):
        data = load_policy_data(data)
    escalation, rule = None, Escalation.from_config(cfg.policy, cfg.head.action_space)
    if rule is not None:
        escalation = {"margin_threshold": rule.margin_threshold,
                      "rate": round(escalation_rate(data, rule.margin_threshold), 4)}
        data = escalated_data(data, rule.margin_threshold)
    actions = space_actions(cfg.head.action_space)
    cols = [int(a) for a in actions]
    data.require_actions(actions)
    seed_everything(cfg.seed)  # init, dropout and Gumbel noise

    cost_model = CostModel.from_measurements(data.costs, cfg.policy_train.cost_normalizer)
    x = torch.from_numpy(data.features_for(cfg.head.feature_mode))  # (N, F)
    task_loss = torch.from_numpy(data.task_loss[:, cols])  # (N, A)
    costs = torch.from_numpy(data.costs[:, cols] / cost_model.scale).float()  # (N, A), normalised
    correct = torch.from_numpy(data.correct[:, cols])  # (N, A) bool
    target = torch.from_numpy(stage1_targets(cfg, data))  # (N,) column indices

    head = VoWHead(HeadSpec(in_features=x.shape[1], **asdict(cfg.head)))
    head.set_standardization(x)
    objective = PolicyLoss(cfg.policy_train)
    stage1_keys = cfg.policy_train.stage1_steps * cfg.train.grad_accum_steps * num_processes()  # keys of all ranks

    def loss_fn(model, batch: tuple[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        stage, idx = batch
        logits = model(x[idx])  # (B, A)
        if stage == 1:
            return objective.imitation(logits, target[idx])
        return objective(logits, task_loss[idx], costs[idx], correct[idx])

    started = time.time()
    train(head, _minibatches(len(data), cfg.train.batch_size, stage1_keys, cfg.seed), loss_fn, cfg.train,
          log_metrics=lambda model: evaluate_head(model, data))
    head.eval()
    oracle = oracle_actions(data, actions)
    summary = {"steps": cfg.train.max_steps, **evaluate_head(head, data), "cost_model": cost_model.to_json(),
               "oracle": policy_metrics(oracle, _one_hot(oracle), data), "escalation": escalation,
               "seconds": round(time.time() - started, 3)}
    return TrainResult(head, summary)


def _minibatches(n: int, batch_size: int, stage1_keys: int, seed: int) -> Callable[[int], object]:
    """``epochs`` for the loop: one endless epoch of ``(stage, question indices (B,))``, the indices drawn
    with replacement by a generator seeded with ``seed``; the first ``stage1_keys`` are stage 1."""

    def epochs(epoch: int):
        generator = torch.Generator().manual_seed(seed)
        for k in itertools.count():
            yield 1 if k < stage1_keys else 2, torch.randint(n, (batch_size,), generator=generator)

    return epochs


def stage1_targets(cfg: TrainPolicyConfig, data: PolicyData) -> np.ndarray:
    """(N,) int64 head-column index of each question's stage-1 target action."""
    actions = space_actions(cfg.head.action_space)
    name = cfg.policy_train.stage1_baseline_name
    if name == "oracle":
        chosen = oracle_actions(data, actions)
    else:
        if name == "uncertainty_threshold":
            data.require_signals()
        nan = np.full(len(data), np.nan)
        inputs = PolicyInputs(data.features, nan if data.entropy is None else data.entropy,
                              nan if data.margin is None else data.margin)
        chosen = make_baseline(name, cfg.policy).choose(inputs).actions
    column = {int(a): i for i, a in enumerate(actions)}
    outside = sorted({Action(int(a)).name for a in chosen if int(a) not in column})
    if outside:
        raise ValueError(f"stage-1 target {name!r} chose {outside}, outside the {cfg.head.action_space} action space")
    return np.asarray([column[int(a)] for a in chosen], dtype=np.int64)


def evaluate_head(head: VoWHead, data: PolicyData) -> dict:
    """Metrics of the head's argmax actions on ``data`` (eval mode; restores the previous mode)."""
    was_training = head.training
    features = data.features_for(head.spec.feature_mode)
    choices = LearnedChooser(head).choose(PolicyInputs(features, np.zeros(len(data)), np.zeros(len(data))))
    head.train(was_training)
    return policy_metrics(choices.actions, choices.probs, data)


def _one_hot(actions: np.ndarray) -> np.ndarray:
    out = np.zeros((len(actions), 3))
    out[np.arange(len(actions)), actions] = 1.0
    return out


def export(result: TrainResult, cfg: TrainPolicyConfig, command: list[str] | None = None) -> Path:
    """Write the head, its summary, training log and manifest into ``policy_train.export_dir``."""
    from training.recipe_common import copy_train_log, recipe_record

    out = Path(cfg.policy_train.export_dir)
    trained_with = {**asdict(cfg.policy_train), "policy": asdict(cfg.policy), "seed": cfg.seed,
                    "train": asdict(cfg.train)}
    result.head.save(out, trained_against={"vqa": resolve_dir(cfg.models.vqa_path, "models.vqa_path")},
                     recipe=recipe_record(command, trained_with=trained_with))
    (out / "train_summary.json").write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    copy_train_log(cfg.train.out_dir, out)
    return out


def run(cfg: TrainPolicyConfig, command: list[str] | None = None, log: Callable[[str], None] = print,
        progress: bool = True) -> dict:
    """``seal train policy``: collect (or reuse) the data, train the head, export it."""
    from training.policy_data import collect

    npz = Path(cfg.policy_data.path)
    vqa = fingerprint(resolve_dir(cfg.models.vqa_path, "models.vqa_path"))
    collected_with = _collected_with(npz)
    if npz.is_file() and not cfg.policy_data.recollect and collected_with == vqa:
        log(f"reusing policy data {npz}")
        data = load_policy_data(npz)
    else:
        if npz.is_file() and not cfg.policy_data.recollect:
            log(f"policy data {npz} was collected with {'another' if collected_with else 'an unrecorded'} VQA "
                f"model; collecting it again with {cfg.models.vqa_path}")
        data = collect(cfg, log, progress)
        save_policy_data(npz, data)
        _sidecar(npz).write_text(json.dumps({"vqa_fingerprint": vqa, "vqa_path": str(cfg.models.vqa_path)},
                                            indent=1) + "\n", encoding="utf-8")
        log(f"wrote policy data {npz} ({len(data)} questions)")
    result = train_policy(cfg, data)
    path = export(result, cfg, command)
    log(f"policy head written to {path}")
    return {"policy_data": str(npz), "n": len(data), "export_dir": str(path),
            "accuracy_by_action": data.correct.mean(axis=0).round(4).tolist(),
            "mean_cost_by_action": np.nanmean(data.costs, axis=0).round(2).tolist(), "train": result.summary}


def _sidecar(npz: Path) -> Path:
    """``<data>.json`` beside the policy data: the fingerprint of the VQA model that answered it."""
    return npz.with_suffix(".json")


def _collected_with(npz: Path) -> str | None:
    """The VQA fingerprint the data at ``npz`` was collected with; None when not recorded."""
    try:
        return json.loads(_sidecar(npz).read_text(encoding="utf-8")).get("vqa_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
