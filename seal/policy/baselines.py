"""Fixed value-of-vision policies behind the same interface as the learned head.

A :class:`Chooser` maps a batch of :class:`~seal.policy.features.PolicyInputs` to
:class:`Choices` (one action, the action distribution and a human-readable reason per question).
The registry :data:`BASELINES` builds the fixed policies of the VoVNet experiments (seed 001, B1-B3)
from a :class:`~seal.policy.config.PolicyConfig`:

- ``always_full`` / ``always_coarse`` / ``no_vision``: one action for every question.
- ``random_policy_matched``: i.i.d. draws with probabilities ``baseline_target_ratios``; the same
  the run's ``seed`` gives the same sequence of draws.
- ``random_bucket_matched``: the same within text-pass entropy buckets (``baseline_bucket_thresholds``),
  each bucket with its own probabilities (``baseline_bucket_ratios``).
- ``uncertainty_threshold``: vision (``baseline_vision``) when the text pass is uncertain
  (entropy > threshold, or margin < threshold), else NO_VISION. Exactly at the threshold: NO_VISION.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from seal.core.errors import ConfigError
from seal.policy.actions import N_ACTIONS, Action
from seal.policy.config import PolicyConfig
from seal.policy.features import PolicyInputs


@dataclass
class Choices:
    """Decisions for a batch of N questions.

    Attributes:
        actions: (N,) int64 :class:`Action` values.
        probs: (N, 3) float64 action distribution over (NO, COARSE, FULL); rows sum to 1
            (one-hot for deterministic policies, 0 for actions outside a binary space).
        reasons: N human-readable explanations.
    """

    actions: np.ndarray
    probs: np.ndarray
    reasons: list[str]


class Chooser(Protocol):
    name: str
    """Registry name (``learned`` for the trained head)."""

    def choose(self, inputs: PolicyInputs) -> Choices:
        """Decide for every row of ``inputs``."""
        ...


class FixedAction:
    """The same action for every question."""

    def __init__(self, name: str, action: Action) -> None:
        self.name, self.action = name, Action(action)

    def choose(self, inputs: PolicyInputs) -> Choices:
        n = len(inputs)
        probs = np.zeros((n, N_ACTIONS))
        probs[:, self.action] = 1.0
        return Choices(np.full(n, int(self.action), dtype=np.int64), probs, [f"baseline {self.name}"] * n)


class RandomMatched:
    """Independent draws from fixed action ratios (matching another policy's action mix)."""

    name = "random_policy_matched"

    def __init__(self, ratios: list[float], seed: int) -> None:
        p = np.asarray(ratios, dtype=np.float64)
        if p.shape != (N_ACTIONS,) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-3:
            raise ValueError(f"ratios: expected 3 probabilities [no, coarse, full], found {ratios}")
        self.ratios = p / p.sum()
        self.rng = np.random.default_rng(seed)

    def choose(self, inputs: PolicyInputs) -> Choices:
        n = len(inputs)
        actions = self.rng.choice(N_ACTIONS, size=n, p=self.ratios).astype(np.int64)
        probs = np.broadcast_to(self.ratios, (n, N_ACTIONS)).copy()
        reasons = [f"baseline {self.name}: drew {Action(a).short} (p={self.ratios[a]:.2f})" for a in actions]
        return Choices(actions, probs, reasons)


class RandomBucketMatched:
    """:class:`RandomMatched` within text-pass entropy buckets: a question's draw uses its bucket's
    ratios (matching another policy's action mix per level of uncertainty, seed 001 B3)."""

    name = "random_bucket_matched"

    def __init__(self, thresholds: list[float], ratios: list[list[float]], seed: int) -> None:
        t = np.asarray(thresholds, dtype=np.float64)
        if t.ndim != 1 or np.any(np.diff(t) <= 0):
            raise ConfigError(f"policy.baseline_bucket_thresholds: expected increasing numbers, found {thresholds}")
        if len(ratios) != len(t) + 1:
            raise ConfigError(f"policy.baseline_bucket_ratios: expected {len(t) + 1} rows (one per bucket), "
                              f"found {len(ratios)}")
        self.thresholds = t
        self.buckets = [RandomMatched(r, seed) for r in ratios]
        self.rng = np.random.default_rng(seed)

    def bucket(self, entropy: np.ndarray) -> np.ndarray:
        """(N,) int64 bucket of each entropy: how many thresholds lie strictly below it."""
        return np.searchsorted(self.thresholds, np.asarray(entropy, dtype=np.float64), side="left")

    def choose(self, inputs: PolicyInputs) -> Choices:
        n = len(inputs)
        buckets = self.bucket(inputs.entropy)
        p = np.stack([self.buckets[b].ratios for b in buckets]) if n else np.zeros((0, N_ACTIONS))  # (N, 3)
        actions = np.array([self.rng.choice(N_ACTIONS, p=row) for row in p], dtype=np.int64)
        reasons = [f"baseline {self.name}: entropy bucket {b}, drew {Action(a).short} (p={row[a]:.2f})"
                   for b, a, row in zip(buckets, actions, p)]
        return Choices(actions, p.copy(), reasons)


class UncertaintyThreshold:
    """Vision when the text pass is uncertain: entropy > threshold or margin < threshold."""

    name = "uncertainty_threshold"

    def __init__(self, signal: str, threshold: float, vision: Action) -> None:
        if signal not in ("entropy", "margin"):
            raise ValueError(f"signal: expected 'entropy' or 'margin', found {signal!r}")
        self.signal, self.threshold, self.vision = signal, float(threshold), Action(vision)

    def fires(self, inputs: PolicyInputs) -> np.ndarray:
        """(N,) bool: the text pass is uncertain."""
        if self.signal == "entropy":
            return inputs.entropy > self.threshold
        return inputs.margin < self.threshold

    def choose(self, inputs: PolicyInputs) -> Choices:
        fire = self.fires(inputs)
        actions = np.where(fire, int(self.vision), int(Action.NO_VISION)).astype(np.int64)
        probs = np.zeros((len(inputs), N_ACTIONS))
        probs[np.arange(len(inputs)), actions] = 1.0
        values = inputs.entropy if self.signal == "entropy" else inputs.margin
        op_fire, op_quiet = (">", "<=") if self.signal == "entropy" else ("<", ">=")
        reasons = [
            f"baseline {self.name}: {self.signal} {v:.3f} {op_fire if f else op_quiet} {self.threshold:.3f}"
            f" -> {Action(a).short}"
            for v, f, a in zip(values, fire, actions)
        ]
        return Choices(actions, probs, reasons)


BASELINES: dict[str, Callable[[PolicyConfig, int], Chooser]] = {
    "always_full": lambda cfg, seed: FixedAction("always_full", Action.FULL_VISION),
    "always_coarse": lambda cfg, seed: FixedAction("always_coarse", Action.COARSE_VISION),
    "no_vision": lambda cfg, seed: FixedAction("no_vision", Action.NO_VISION),
    "random_policy_matched": lambda cfg, seed: RandomMatched(_required_ratios(cfg), seed),
    "random_bucket_matched": lambda cfg, seed: RandomBucketMatched(*_required_buckets(cfg), seed),
    "uncertainty_threshold": lambda cfg, seed: UncertaintyThreshold(
        cfg.baseline_uncertainty, cfg.baseline_threshold, Action.from_short(cfg.baseline_vision)),
}


def make_baseline(name: str, cfg: PolicyConfig, seed: int = 0) -> Chooser:
    """The fixed policy ``name`` configured by ``cfg`` (its ``baseline_*`` fields); ``seed`` (the
    run's) orders a random baseline's draws."""
    if name not in BASELINES:
        raise ConfigError(f"policy.baseline_name: expected one of {sorted(BASELINES)}, found {name!r}")
    return BASELINES[name](cfg, seed)


def _required_buckets(cfg: PolicyConfig) -> tuple[list[float], list[list[float]]]:
    if cfg.baseline_bucket_thresholds is None or cfg.baseline_bucket_ratios is None:
        raise ConfigError("policy.baseline_bucket_thresholds and policy.baseline_bucket_ratios: required by "
                          "random_bucket_matched")
    return cfg.baseline_bucket_thresholds, cfg.baseline_bucket_ratios


def _required_ratios(cfg: PolicyConfig) -> list[float]:
    if cfg.baseline_target_ratios is None:
        raise ConfigError("policy.baseline_target_ratios: required by random_policy_matched")
    return cfg.baseline_target_ratios

