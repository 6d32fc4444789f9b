"""The safety fallback (seed 001, E1): escalate a NO_VISION decision when the text pass is unsure.

A NO_VISION decision becomes ``fallback_action`` when, per ``fallback_mode``,

- ``entropy``: next-token entropy > ``fallback_entropy_threshold`` (nats),
- ``margin``:  top-1 minus top-2 probability < ``fallback_margin_threshold``,
- ``either``:  either of the two,
- ``none``:    never.

Decisions other than NO_VISION are never changed. Both comparisons are strict.
"""

from __future__ import annotations

import numpy as np

from seal.policy.actions import Action
from seal.policy.config import PolicyConfig
from seal.policy.features import PolicyInputs


class Fallback:
    def __init__(self, mode: str, entropy_threshold: float, margin_threshold: float, action: Action) -> None:
        if mode not in ("none", "entropy", "margin", "either"):
            raise ValueError(f"fallback mode: expected none|entropy|margin|either, found {mode!r}")
        if action == Action.NO_VISION:
            raise ValueError("the fallback action must spend vision (coarse or full)")
        self.mode, self.action = mode, Action(action)
        self.entropy_threshold, self.margin_threshold = float(entropy_threshold), float(margin_threshold)

    @classmethod
    def from_config(cls, cfg: PolicyConfig) -> "Fallback":
        return cls(cfg.fallback_mode, cfg.fallback_entropy_threshold, cfg.fallback_margin_threshold,
                   Action.from_short(cfg.fallback_action))

    def triggers(self, inputs: PolicyInputs) -> tuple[np.ndarray, list[str]]:
        """Which questions are uncertain enough to escalate: ``(fires (N,) bool, why per row)``."""
        n = len(inputs)
        high_entropy = inputs.entropy > self.entropy_threshold
        low_margin = inputs.margin < self.margin_threshold
        if self.mode == "none":
            return np.zeros(n, dtype=bool), [""] * n
        fires = {"entropy": high_entropy, "margin": low_margin, "either": high_entropy | low_margin}[self.mode]
        why = []
        for i in range(n):
            parts = []
            if self.mode in ("entropy", "either") and high_entropy[i]:
                parts.append(f"entropy {inputs.entropy[i]:.3f} > {self.entropy_threshold:.3f}")
            if self.mode in ("margin", "either") and low_margin[i]:
                parts.append(f"margin {inputs.margin[i]:.3f} < {self.margin_threshold:.3f}")
            why.append(" and ".join(parts))
        return fires, why

    def apply(self, actions: np.ndarray, inputs: PolicyInputs) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Escalate NO_VISION rows that trigger.

        Args:
            actions: (N,) int Action values chosen by the policy.
        Returns:
            ``(final_actions (N,) int64, fired (N,) bool, note per row: "" when not fired)``.
        """
        triggers, why = self.triggers(inputs)
        fired = triggers & (np.asarray(actions) == int(Action.NO_VISION))
        final = np.where(fired, int(self.action), actions).astype(np.int64)
        notes = [f"fallback: {w} -> {self.action.short}" if f else "" for f, w in zip(fired, why)]
        return final, fired, notes
