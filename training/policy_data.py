"""Policy-training data: run the agent under every action on SynthVStar TRAIN questions, save the ``.npz``.

For each question the agent is asked three times with ``force_action`` = ``no``, ``coarse``,
``full``; the text pass (and so the policy features) is the same for all three. Recorded per
question (see :mod:`seal.policy.data` for the file format):

- ``features`` (D+2,): the decision's feature vector of the text pass, which under the fixed policy
  that forces the actions is :data:`seal.policy.data.FEATURE_MODE` (every head reads a subset);
- ``task_loss`` (3,): NLL of the correct option under each action (likelihood protocol: softmax over
  the mean option log-likelihoods; letter protocol: the letter probabilities);
- ``correct`` (3,): the chosen option was the correct one;
- ``costs`` (3,): measured vision tokens (the ledger), NO = 0;
- ``entropy`` / ``margin`` of the text pass, ``ids`` the question ids;
- ``coarse_margin``: top-1 minus top-2 option score of the COARSE answer (what the COARSE -> FULL
  escalation of :mod:`seal.policy.escalation` reads; training replays it on these columns).

The questions (``seal bench synth`` of the command's ``synth`` section) are generated when
``policy_data.bench_dir`` has none, so train questions never share a scene with the val / test
splits. Whatever VQA / VSM models ``models`` points to are used; the policy itself does not matter
(actions are forced).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from seal.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from eval.synth.config import SynthConfig
    from seal.policy.data import PolicyData
    from training.policy_config import TrainPolicyConfig

FORCED_ACTIONS = ("no", "coarse", "full")
"""Columns of the arrays, in :class:`seal.policy.actions.Action` order."""


def ensure_questions(synth: "SynthConfig", bench_dir: str | Path) -> Path:
    """``bench_dir`` with a SynthVStar benchmark of ``synth`` (never the ``test`` split), generated if missing."""
    from eval.synth.generate import generate_benchmark

    if synth.split == "test":
        raise ConfigError("synth.split: policy data come from 'train' questions, found 'test'")
    bench = Path(bench_dir)
    if (bench / "categories.json").is_file():
        return bench
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


def collect(cfg: "TrainPolicyConfig", log: Callable[[str], None] = print, progress: bool = True) -> "PolicyData":
    """Run the agent of ``cfg`` (:meth:`TrainPolicyConfig.ask_config`) under every forced action on the
    questions of ``cfg.synth`` in ``policy_data.bench_dir`` (generated when missing)."""
    from eval.readers.vstar import QUESTIONS_FILE, read_vstar
    from seal.agent.pipeline import Agent

    bench = ensure_questions(cfg.synth, cfg.policy_data.bench_dir)
    protocol = cfg.agent.answer_protocol
    samples = read_vstar(bench / QUESTIONS_FILE if protocol == "letter" else bench)
    if cfg.policy_data.limit is not None:
        samples = samples[: cfg.policy_data.limit]
    log(f"collecting policy data: {len(samples)} questions x {len(FORCED_ACTIONS)} actions from {bench}")
    return collect_policy_data(Agent.from_config(cfg.ask_config()), samples, protocol, progress)
