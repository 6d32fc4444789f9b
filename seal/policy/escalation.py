"""COARSE -> FULL escalation: the second look of a value-of-vision decision.

The policy decides from the question alone; a COARSE decision is then checked against what the
coarse view gave. The question escalates to FULL vision (free reply on the full view, the
missing-target search, the VWM answer) when

- the answer is multiple choice and its top-1 option score leads the second by less than
  ``policy.escalation_margin_threshold`` (likelihood protocol: mean option log-likelihoods, nats
  per token; letter protocol: letter probabilities), or
- the answer is free form and is the "missing objects" refusal.

Only decisions of the learned head escalate: the fixed baselines are the references the head is
measured against (``always_coarse`` stays coarse), and forced actions are never changed. Both
views' vision tokens are booked. Training replays the rule on the recorded COARSE margins
(:func:`escalated_data`), so the head learns what a COARSE decision really costs and answers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from seal.core.errors import InputError
from seal.policy.actions import Action
from seal.policy.data import PolicyData

if TYPE_CHECKING:
    from seal.policy.config import PolicyConfig


class Escalation:
    """The rule at one threshold (see the module docstring)."""

    def __init__(self, margin_threshold: float) -> None:
        if not (math.isfinite(margin_threshold) and margin_threshold >= 0):
            raise ValueError(f"escalation margin threshold: expected a finite value >= 0, found {margin_threshold}")
        self.margin_threshold = float(margin_threshold)

    @classmethod
    def from_config(cls, cfg: "PolicyConfig", action_space: str) -> "Escalation | None":
        """The rule of ``policy.escalation_margin_threshold`` for a head deciding over ``action_space``;
        None when it is null or the action space is binary (no COARSE to escalate from)."""
        if cfg.escalation_margin_threshold is None or action_space != "ternary":
            return None
        return cls(cfg.escalation_margin_threshold)

    def check(self, scores: Sequence[float] | None, refused: bool) -> str | None:
        """Why the COARSE answer escalates (a note for the decision's reason), or None when it stands.

        Args:
            scores: the COARSE answer's option scores (None: free form).
            refused: the free-form COARSE answer is the "missing objects" refusal.
        """
        if scores is None or len(scores) < 2:
            return "the coarse view's reply is the missing-objects refusal -> full" if refused else None
        margin = option_margin(scores)
        if margin < self.margin_threshold:
            return f"escalation: coarse option margin {margin:.3f} < {self.margin_threshold:.3f} -> full"
        return None


def option_margin(scores: Sequence[float]) -> float:
    """Top-1 minus top-2 of option scores (NaN for fewer than two)."""
    if len(scores) < 2:
        return float("nan")
    top = sorted((float(v) for v in scores), reverse=True)
    return top[0] - top[1]


def escalated_data(data: PolicyData, margin_threshold: float) -> PolicyData:
    """``data`` with its COARSE column replayed under the rule: where the recorded COARSE margin is
    below the threshold, COARSE answers as FULL did and costs both (COARSE + FULL tokens).

    Free-form rows (NaN margin) keep their COARSE outcome. Raises InputError when ``data`` has no
    ``coarse_margin`` (collected before the escalation existed).
    """
    if data.coarse_margin is None:
        raise InputError("the policy data has no coarse_margin array (collected before the COARSE -> FULL "
                         "escalation): recollect (--policy_data.recollect=true) or train without it "
                         "(--policy.escalation_margin_threshold=null)", data.source)
    fires = _fires(data.coarse_margin, margin_threshold)
    c, f = int(Action.COARSE_VISION), int(Action.FULL_VISION)
    task_loss, correct, costs = data.task_loss.copy(), data.correct.copy(), data.costs.copy()
    task_loss[fires, c] = data.task_loss[fires, f]
    correct[fires, c] = data.correct[fires, f]
    costs[fires, c] = data.costs[fires, c] + data.costs[fires, f]
    return dataclasses.replace(data, task_loss=task_loss, correct=correct, costs=costs)


def escalation_rate(data: PolicyData, margin_threshold: float) -> float:
    """Share of the data's questions whose COARSE answer would escalate (NaN without margins)."""
    if data.coarse_margin is None:
        return float("nan")
    return float(np.mean(_fires(data.coarse_margin, margin_threshold)))


def _fires(coarse_margin: np.ndarray, margin_threshold: float) -> np.ndarray:
    """(N,) bool: the recorded COARSE margin is below the threshold (NaN, free form: never)."""
    return np.nan_to_num(coarse_margin, nan=np.inf) < margin_threshold
