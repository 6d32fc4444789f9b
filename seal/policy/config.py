"""``PolicyConfig``: the value-of-vision policy, its fixed baselines, the fallback rule and training.

Field names follow the VoVNet experiment recipes (``policy.baseline_name``, ``policy.lambda_cost``,
``policy.fallback_entropy_threshold``, ...). Thresholds are in the units of the text pass:
entropy in nats over the LLM vocabulary, margin = top-1 minus top-2 next-token probability.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seal.core.errors import ConfigError, InputError

FeatureMode = Literal["hidden", "hidden_entropy", "hidden_margin", "hidden_entropy_margin"]
BaselineName = Literal["always_full", "always_coarse", "no_vision", "random_policy_matched", "uncertainty_threshold"]
Stage1Target = Literal["always_full", "always_coarse", "no_vision", "uncertainty_threshold", "oracle"]


@dataclass
class PolicyConfig:
    # ---- features and head ---------------------------------------------------------------------
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
    checkpoint: str | None = "checkpoints/policy_tiny"
    """Directory with ``head.safetensors`` + ``head.json`` of a trained head: the learned policy
    (``baseline_name: null``) decides with it; a missing directory is an error, never a silent
    baseline. Unused by the baselines and by training."""

    # ---- fixed baselines (seed 001, B1-B3) -----------------------------------------------------
    baseline_name: BaselineName | None = None
    """None = the learned policy; otherwise the fixed policy that decides instead."""
    baseline_target_ratios: list[float] | None = None
    """``random_policy_matched``: probabilities of [no, coarse, full] (sum 1), e.g. the action ratios
    the learned policy reached at some lambda_cost. Required for that baseline."""
    baseline_seed: int = 0
    """Seed of ``random_policy_matched`` (same seed -> same action sequence)."""
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

    # ---- loss ----------------------------------------------------------------------------------
    lambda_cost: float = 0.05
    """Weight of the expected normalised vision cost (the accuracy/cost trade-off; sweep for Pareto)."""
    lambda_cal: float = 0.0
    """Weight of the calibration term: mean (p(chosen action) - chosen action answered right)^2."""
    use_straight_through: bool = True
    """Stage 2 weighs task losses by a Gumbel-softmax straight-through one-hot sample (True) or by
    the softmax probabilities, a soft mixture (False) (ablation D2)."""
    gumbel_tau: float = 1.0
    """Gumbel-softmax temperature."""
    cost_normalizer: float = 0.0
    """Vision-token costs are divided by this in the loss; 0 = the mean FULL_VISION cost of the
    training data, so FULL costs about 1."""

    # ---- training (on precomputed text-pass features, see seal.policy.data) ---------------------
    stage1_steps: int = 100
    """Stage 1: cross-entropy towards a fixed target action (warm start); 0 skips it."""
    stage1_baseline_name: Stage1Target = "always_full"
    """Stage-1 target: a fixed baseline's action, or ``oracle`` = the cheapest action of the action
    space that answered right (FULL_VISION when none did)."""
    stage1_label_smoothing: float = 0.1
    """Label smoothing of the stage-1 cross-entropy; keeps the warm-started softmax from saturating
    (a saturated softmax gives stage 2 almost no gradient to move away from the target)."""
    stage2_steps: int = 1000
    """Stage 2: the cost-aware objective."""
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    log_every: int = 50
    seed: int = 0
    """Seed of initialisation, minibatch sampling and Gumbel noise."""

    def __post_init__(self) -> None:
        binary = self.action_space == "binary"
        if self.hidden_dim < 1:
            raise ConfigError(f"policy.hidden_dim: expected >= 1, found {self.hidden_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"policy.dropout: expected 0 <= dropout < 1, found {self.dropout}")
        if binary and self.baseline_name == "always_coarse":
            raise ConfigError("policy.baseline_name: always_coarse needs action_space: ternary (binary is no/full)")
        if self.baseline_name == "random_policy_matched":
            self._check_ratios(binary)
        elif self.baseline_target_ratios is not None and len(self.baseline_target_ratios) != 3:
            raise ConfigError(f"policy.baseline_target_ratios: expected 3 values [no, coarse, full], "
                              f"found {self.baseline_target_ratios}")
        if self.baseline_uncertainty == "margin" and not 0.0 <= self.baseline_threshold <= 1.0:
            raise ConfigError(f"policy.baseline_threshold: a margin threshold must be in [0, 1], "
                              f"found {self.baseline_threshold}")
        if self.baseline_threshold < 0:
            raise ConfigError(f"policy.baseline_threshold: expected >= 0, found {self.baseline_threshold}")
        uses_threshold = "uncertainty_threshold" in (self.baseline_name, self.stage1_baseline_name)
        if binary and uses_threshold and self.baseline_vision == "coarse":
            raise ConfigError("policy.baseline_vision: coarse needs action_space: ternary")
        if self.fallback_entropy_threshold < 0:
            raise ConfigError(f"policy.fallback_entropy_threshold: expected >= 0, found {self.fallback_entropy_threshold}")
        if not 0.0 <= self.fallback_margin_threshold <= 1.0:
            raise ConfigError(f"policy.fallback_margin_threshold: expected 0..1, found {self.fallback_margin_threshold}")
        threshold = self.escalation_margin_threshold
        if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
            raise ConfigError(f"policy.escalation_margin_threshold: expected a finite value >= 0 or null, found {threshold}")
        if binary and self.fallback_mode != "none" and self.fallback_action == "coarse":
            raise ConfigError("policy.fallback_action: coarse needs action_space: ternary")
        for name in ("lambda_cost", "lambda_cal", "cost_normalizer", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"policy.{name}: expected a finite value >= 0, found {value}")
        if self.gumbel_tau <= 0:
            raise ConfigError(f"policy.gumbel_tau: expected > 0, found {self.gumbel_tau}")
        if binary and self.stage1_baseline_name == "always_coarse":
            raise ConfigError("policy.stage1_baseline_name: always_coarse needs action_space: ternary")
        if self.stage1_steps < 0 or self.stage2_steps < 0:
            raise ConfigError(f"policy.stage1_steps / stage2_steps: expected >= 0, found "
                              f"{self.stage1_steps} / {self.stage2_steps}")
        if self.stage1_steps + self.stage2_steps < 1:
            raise ConfigError("policy.stage1_steps + stage2_steps: at least one training step is needed")
        if not 0.0 <= self.stage1_label_smoothing < 1.0:
            raise ConfigError(f"policy.stage1_label_smoothing: expected 0 <= value < 1, found {self.stage1_label_smoothing}")
        for name in ("batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"policy.{name}: expected >= 1, found {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"policy.lr: expected > 0, found {self.lr}")

    def _check_ratios(self, binary: bool) -> None:
        ratios = self.baseline_target_ratios
        if ratios is None:
            raise ConfigError("policy.baseline_target_ratios: required by random_policy_matched "
                              "(probabilities of [no, coarse, full])")
        if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios):
            raise ConfigError(f"policy.baseline_target_ratios: expected 3 values >= 0 [no, coarse, full], found {ratios}")
        if abs(sum(ratios) - 1.0) > 1e-3:
            raise ConfigError(f"policy.baseline_target_ratios: must sum to 1, found {ratios} (sum {sum(ratios):.6f})")
        if binary and ratios[1] > 0:
            raise ConfigError(f"policy.baseline_target_ratios: the coarse ratio must be 0 with action_space: "
                              f"binary, found {ratios}")


TRAINED_CONFIG_NAME = "policy_config.json"
"""The resolved :class:`PolicyConfig` a trained head was made with, written beside it by training."""


def trained_lambda_cost(checkpoint_dir: str | Path) -> float | None:
    """``lambda_cost`` the head in ``checkpoint_dir`` was trained with, or None when not recorded.

    Raises:
        InputError: ``policy_config.json`` is not a JSON object, or its ``lambda_cost`` not a number.
    """
    record = Path(checkpoint_dir) / TRAINED_CONFIG_NAME
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"expected the JSON policy config the head was trained with, found malformed JSON ({exc})",
                         record) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, found {type(data).__name__}", record)
    value = data.get("lambda_cost")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"'lambda_cost': expected a finite number, found {value!r}", record)
    return float(value)
