"""Policy-training data: run the agent under every action on a SynthVStar TRAIN split, save the ``.npz``.

For each question the agent is asked three times with ``force_action`` = ``no``, ``coarse``,
``full``; the text pass (and so the policy features) is the same for all three. Recorded per
question (see :mod:`seal.policy.data` for the file format):

- ``features`` (F,): the decision's :func:`seal.policy.features.build_features` vector of the text
  pass (``policy.feature_mode`` / ``policy.hidden_source`` of the config);
- ``task_loss`` (3,): NLL of the correct option under each action (likelihood protocol: softmax over
  the mean option log-likelihoods; letter protocol: the letter probabilities);
- ``correct`` (3,): the chosen option was the correct one;
- ``costs`` (3,): measured vision tokens (the ledger), NO = 0;
- ``entropy`` / ``margin`` of the text pass, ``ids`` the question ids;
- ``coarse_margin``: top-1 minus top-2 option score of the COARSE answer (what the COARSE -> FULL
  escalation of :mod:`seal.policy.escalation` reads; training replays it on these columns).

The benchmark is generated (``seal bench synth --split train --suite mixed``) when ``bench_dir``
has none, so train questions never share a scene with the val / test splits. Whatever VQA / VSM
models ``agent`` points to are used; the policy itself does not matter (actions are forced).

:func:`run` is the ``seal train policy`` recipe: collect (or reuse) the data, then
:func:`seal.policy.train.train_policy`, writing the head to ``policy.checkpoint``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from seal.errors import ConfigError, InputError

if TYPE_CHECKING:
    from seal.config import Config
    from seal.policy.data import PolicyData

FORCED_ACTIONS = ("no", "coarse", "full")
"""Columns of the arrays, in :class:`seal.policy.actions.Action` order."""


@dataclass
class PolicyDataConfig:
    path: str = "runs/policy/policy_data_train.npz"
    """The ``.npz`` written (and reused when it exists, unless ``recollect``)."""
    bench_dir: str = "runs/policy/synth_train"
    """SynthVStar TRAIN split the questions come from; generated here when it holds no benchmark."""
    n: int = 200
    """Questions to generate (and run) when generating; an existing benchmark is used whole (or up to ``limit``)."""
    limit: int | None = None
    """Use at most this many questions of the benchmark (None = all)."""
    seed: int = 0
    """Seed of the generated split."""
    long_side: int = 1024
    """Median long image side of the generated split (px)."""
    recollect: bool = False
    """Run the agent again even when ``path`` exists."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"policy_data.n: expected >= 1, found {self.n}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"policy_data.limit: expected >= 1 or null, found {self.limit}")
        if not self.path.endswith(".npz"):
            raise ConfigError(f"policy_data.path: expected a .npz file, found {self.path!r}")


def ensure_train_split(cfg: "Config", data_cfg: PolicyDataConfig) -> Path:
    """``bench_dir`` with a SynthVStar ``train`` / ``mixed`` benchmark, generated if missing."""
    from eval.synth.generate import generate_benchmark

    bench = Path(data_cfg.bench_dir)
    if (bench / "categories.json").is_file():
        return bench
    synth = dataclasses.replace(cfg.synth, n=data_cfg.n, seed=data_cfg.seed, split="train", suite="mixed",
                                long_side=data_cfg.long_side)
    generate_benchmark(synth, bench)
    return bench


def collect_policy_data(agent: Any, samples: Sequence[Any], protocol: str, progress: bool = True) -> "PolicyData":
    """Ask every sample under each forced action; ``samples`` are :class:`eval.readers.vstar.VStarSample`.

    ``agent`` must have been built with ``annotation``-aware ``set_image`` when it searches with the
    oracle (the sample's JSON is always passed; other localizers ignore it).
    """
    from tqdm import tqdm

    from eval.runner import sample_annotation
    from seal.policy.data import PolicyData
    from seal.policy.escalation import option_margin

    n = len(samples)
    if n == 0:
        raise InputError("no questions to collect policy data from")
    feats, loss, correct, costs = [], np.zeros((n, 3), np.float32), np.zeros((n, 3), bool), np.zeros((n, 3), np.float32)
    entropy, margin = np.zeros(n, np.float32), np.zeros(n, np.float32)
    coarse_margin = np.full(n, np.nan, np.float32)
    for i, sample in enumerate(tqdm(samples, desc="policy data", unit="q", file=sys.stderr, disable=not progress)):
        agent.set_image(sample.image, annotation=sample_annotation(sample))
        for col, action in enumerate(FORCED_ACTIONS):
            res = agent.ask(sample.question, list(sample.options), force_action=action)
            if res.action != action:
                raise RuntimeError(f"agent ran {res.action!r} although {action!r} was forced")
            loss[i, col] = option_nll(res.option_scores, sample.answer, protocol, res.answer_index)
            correct[i, col] = res.answer_index == sample.answer
            costs[i, col] = 0.0 if action == "no" else float(res.ledger.vision_tokens)
            if action == "coarse" and res.option_scores is not None:
                coarse_margin[i] = option_margin(res.option_scores)
            if col == 0:
                feats.append(np.asarray(res.decision.features, dtype=np.float32).reshape(-1))
                entropy[i], margin[i] = res.text_pass["entropy"], res.text_pass["margin"]
    return PolicyData(features=np.stack(feats), task_loss=loss, correct=correct, costs=costs, entropy=entropy,
                      margin=margin, ids=np.array([s.question_id for s in samples], dtype=str),
                      coarse_margin=coarse_margin)


def option_nll(scores: Sequence[float] | None, gold: int, protocol: str, chosen: int | None) -> float:
    """Task loss of one answer: NLL (nats) of the correct option, or 0/1 error without scores.

    ``likelihood`` scores are mean per-token log-likelihoods (normalised here with a softmax over the
    options); ``letter`` scores are already probabilities over the option letters.
    """
    if scores is None:
        return 0.0 if chosen == gold else 1.0
    s = np.asarray(scores, dtype=np.float64)
    if protocol == "letter":
        return float(-math.log(max(float(s[gold]) / max(float(s.sum()), 1e-12), 1e-12)))
    z = s - s.max()
    return float(-(z[gold] - math.log(np.exp(z).sum())))


def run(cfg: "Config", data_cfg: PolicyDataConfig | None = None, log: Callable[[str], None] = print,
        progress: bool = True) -> dict:
    """``seal train policy``: collect (or reuse) the npz, train the head into ``policy.checkpoint``."""
    from seal.policy.data import load_policy_data, save_policy_data
    from seal.policy.train import train_policy

    data_cfg = data_cfg if data_cfg is not None else cfg.policy_data
    if not cfg.policy.checkpoint:
        raise InputError("policy.checkpoint: set the directory the trained head is written to "
                         "(e.g. --policy.checkpoint=checkpoints/policy_tiny)")
    npz = Path(data_cfg.path)
    if npz.is_file() and not data_cfg.recollect:
        log(f"reusing policy data {npz}")
        data = load_policy_data(npz)
    else:
        data = _collect(cfg, data_cfg, log, progress)
        save_policy_data(npz, data)
        log(f"wrote policy data {npz} ({len(data)} questions)")
    result = train_policy(cfg.policy, data, out_dir=cfg.policy.checkpoint)
    log(f"policy head written to {cfg.policy.checkpoint}")
    return {"policy_data": str(npz), "n": len(data), "checkpoint": str(cfg.policy.checkpoint),
            "accuracy_by_action": data.correct.mean(axis=0).round(4).tolist(),
            "mean_cost_by_action": np.nanmean(data.costs, axis=0).round(2).tolist(), "train": result.summary}


def _collect(cfg: "Config", data_cfg: PolicyDataConfig, log: Callable[[str], None], progress: bool) -> "PolicyData":
    from eval.readers.vstar import QUESTIONS_FILE, read_vstar
    from seal.agent.pipeline import Agent

    bench = ensure_train_split(cfg, data_cfg)
    protocol = cfg.agent.answer_protocol
    samples = read_vstar(bench / QUESTIONS_FILE if protocol == "letter" else bench)
    if data_cfg.limit is not None:
        samples = samples[: data_cfg.limit]
    log(f"collecting policy data: {len(samples)} questions x {len(FORCED_ACTIONS)} actions from {bench}")
    # The actions are forced, so any fixed policy will do; the learned head need not exist yet.
    agent_cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, baseline_name="always_full",
                                                                    checkpoint=None))
    return collect_policy_data(Agent.from_config(agent_cfg), samples, protocol, progress)
