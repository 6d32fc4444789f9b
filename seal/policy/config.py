"""The value-of-vision policy's configs: ``PolicyConfig`` (how it decides) and ``HeadConfig`` (the
learned head's own model settings, stored in its checkpoint).

``PolicyConfig`` is the ``policy`` section: which trained head decides, or which fixed baseline
does instead, the fallback rule and the COARSE -> FULL escalation. ``HeadConfig`` is what a head is
built from (its features, action space and width); training records it in the head's checkpoint, so
deciding never needs it from a config. The head's training settings (the loss weights, the two
stages) are the ``policy_train`` section of ``seal train policy`` (:mod:`training.policy_config`).

Field names follow the VoVNet experiment recipes (``policy.baseline_name``,
``policy.fallback_entropy_threshold``, ...). Thresholds are in the units of the text pass: entropy
in nats over the LLM vocabulary, margin = top-1 minus top-2 next-token probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seal.core.errors import ConfigError, InputError

FeatureMode = Literal["hidden", "hidden_entropy", "hidden_margin", "hidden_entropy_margin"]
BaselineName = Literal["always_full", "always_coarse", "no_vision", "random_policy_matched", "random_bucket_matched",
                       "uncertainty_threshold"]


@dataclass
class HeadConfig:
    """The learned head's model settings (the ``head`` section of ``seal train policy``; a trained
    head's checkpoint records them with its input width, :class:`seal.policy.head.HeadSpec`)."""

    feature_mode: FeatureMode = "hidden_entropy_margin"
    """Policy input: the text-pass hidden state, optionally with the normalised entropy and/or margin
    appended (ablation D1)."""
    hidden_source: Literal["pooled", "last"] = "pooled"
    """Which text-pass hidden state is the ``hidden`` feature: the mean over prompt tokens (``pooled``)
    or the last prompt token (``last``)."""
    action_space: Literal["binary", "ternary"] = "ternary"
    """``binary``: NO_VISION vs FULL_VISION; ``ternary``: NO / COARSE / FULL (ablation D4)."""
    hidden_dim: int = 256
    """Width of the head's hidden layer."""
    dropout: float = 0.1
    """Dropout after the head's hidden layer (training only)."""

    def __post_init__(self) -> None:
        if self.hidden_dim < 1:
            raise ConfigError(f"head.hidden_dim: expected >= 1, found {self.hidden_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"head.dropout: expected 0 <= dropout < 1, found {self.dropout}")


@dataclass
class PolicyConfig:
    """The ``policy`` section: who decides (the trained head or a fixed baseline) and the rules after."""

    checkpoint: str | None = "checkpoints/policy_tiny"
    """Directory of a trained head (its manifest, ``head.json`` and ``head.safetensors``): the learned
    policy (``baseline_name: null``) decides with it; a missing directory is an error, never a silent
    baseline. Unused by the baselines."""

    # ---- fixed baselines (seed 001, B1-B3) -----------------------------------------------------
    baseline_name: BaselineName | None = None
    """None = the learned policy; otherwise the fixed policy that decides instead."""
    baseline_target_ratios: list[float] | None = None
    """``random_policy_matched``: probabilities of [no, coarse, full] (sum 1), e.g. the action ratios
    the learned policy reached at some lambda_cost. Required for that baseline."""
    baseline_bucket_thresholds: list[float] | None = None
    """``random_bucket_matched``: increasing text-pass entropy thresholds (nats) cutting the questions
    into ``len + 1`` buckets (bucket k: entropy above k of them). Required for that baseline."""
    baseline_bucket_ratios: list[list[float]] | None = None
    """``random_bucket_matched``: per bucket, probabilities of [no, coarse, full] (each sums to 1),
    e.g. the learned policy's action ratios within each entropy bucket. Required for that baseline."""
    baseline_uncertainty: Literal["entropy", "margin"] = "entropy"
    """``uncertainty_threshold``: which text-pass signal is thresholded."""
    baseline_threshold: float = 0.5
    """``uncertainty_threshold``: vision when entropy > threshold (nats) or margin < threshold."""
    baseline_vision: Literal["coarse", "full"] = "full"
    """``uncertainty_threshold``: the vision action taken when the threshold fires."""

    # ---- fallback (seed 001, E1) ---------------------------------------------------------------
    fallback_mode: Literal["none", "entropy", "margin", "either"] = "none"
    """Which signal may escalate a NO_VISION decision: entropy > fallback_entropy_threshold,
    margin < fallback_margin_threshold, or either of them."""
    fallback_entropy_threshold: float = 2.0
    fallback_margin_threshold: float = 0.1
    fallback_action: Literal["coarse", "full"] = "full"
    """The action a fired fallback escalates NO_VISION to."""

    # ---- COARSE -> FULL escalation (seal.policy.escalation) ------------------------------------
    escalation_margin_threshold: float | None = 0.5
    """A COARSE decision of the learned head escalates to FULL when the coarse answer's top-1 option
    score leads the second by less than this (likelihood protocol: mean log-likelihood, nats per
    token), or when a free-form coarse reply is the missing-objects refusal; null = never. Training
    replays it on the recorded coarse margins. Baselines and forced actions never escalate. Chosen
    on the validation suites (README "Measured", item 17)."""

    def __post_init__(self) -> None:
        if self.baseline_name == "random_policy_matched":
            self._check_ratios()
        elif self.baseline_target_ratios is not None and len(self.baseline_target_ratios) != 3:
            raise ConfigError(f"policy.baseline_target_ratios: expected 3 values [no, coarse, full], "
                              f"found {self.baseline_target_ratios}")
        if self.baseline_uncertainty == "margin" and not 0.0 <= self.baseline_threshold <= 1.0:
            raise ConfigError(f"policy.baseline_threshold: a margin threshold must be in [0, 1], "
                              f"found {self.baseline_threshold}")
        if self.baseline_threshold < 0:
            raise ConfigError(f"policy.baseline_threshold: expected >= 0, found {self.baseline_threshold}")
        if self.fallback_entropy_threshold < 0:
            raise ConfigError(f"policy.fallback_entropy_threshold: expected >= 0, found "
                              f"{self.fallback_entropy_threshold}")
        if not 0.0 <= self.fallback_margin_threshold <= 1.0:
            raise ConfigError(f"policy.fallback_margin_threshold: expected 0..1, found "
                              f"{self.fallback_margin_threshold}")
        threshold = self.escalation_margin_threshold
        if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"policy.escalation_margin_threshold: expected a finite value >= 0 or null, "
                              f"found {threshold}")

    def _check_ratios(self) -> None:
        ratios = self.baseline_target_ratios
        if ratios is None:
            raise ConfigError("policy.baseline_target_ratios: required by random_policy_matched "
                              "(probabilities of [no, coarse, full])")
        if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios):
            raise ConfigError(f"policy.baseline_target_ratios: expected 3 values >= 0 [no, coarse, full], "
                              f"found {ratios}")
        if abs(sum(ratios) - 1.0) > 1e-3:
            raise ConfigError(f"policy.baseline_target_ratios: must sum to 1, found {ratios} (sum {sum(ratios):.6f})")


def trained_lambda_cost(checkpoint_dir: str | Path) -> float | None:
    """``lambda_cost`` the head in ``checkpoint_dir`` was trained with (its manifest's
    ``recipe.trained_with``), or None when not recorded.

    Raises:
        InputError: no or a malformed manifest, or ``lambda_cost`` not a number.
    """
    from seal.core.manifest import MANIFEST, read_manifest

    record = Path(checkpoint_dir) / MANIFEST
    data = read_manifest(checkpoint_dir, "policy_head").recipe.get("trained_with")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, found {type(data).__name__}", record)
    value = data.get("lambda_cost")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"'lambda_cost': expected a finite number, found {value!r}", record)
    return float(value)
