"""``CostModel``: what each action costs, in measured vision tokens.

``c(NO_VISION) = 0``; ``c(COARSE_VISION)`` and ``c(FULL_VISION)`` are means of what the pipeline
booked in its :class:`vwm.ledger.CostLedger` (``vision_tokens``: global view + working-memory crops
+ the search model's tokens). The loss uses *normalised* costs, ``c / normalizer``; by default the
normaliser is the mean full cost, so FULL_VISION costs 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from seal.core.errors import InputError
from seal.policy.actions import ALL_ACTIONS, Action


@dataclass(frozen=True)
class CostModel:
    c_coarse: float
    """Mean vision tokens of a COARSE_VISION answer."""
    c_full: float
    """Mean vision tokens of a FULL_VISION answer (global view + crops + search model)."""
    normalizer: float = 0.0
    """Divide token costs by this for the loss; 0 = ``c_full``."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c_coarse) and np.isfinite(self.c_full)) or self.c_coarse < 0 or self.c_full <= 0:
            raise InputError(f"vision-token costs must be finite with c_coarse >= 0 and c_full > 0, found "
                             f"c_coarse={self.c_coarse}, c_full={self.c_full}")
        if self.normalizer < 0:
            raise InputError(f"cost normalizer: expected >= 0, found {self.normalizer}")

    @classmethod
    def from_measurements(cls, costs: Any, normalizer: float = 0.0) -> "CostModel":
        """Mean costs from measured vision tokens.

        Args:
            costs: (N, 3) vision tokens per question and action (columns NO, COARSE, FULL; the NO
                column must be 0; NaN marks an action that was not run and is left out of its mean),
                or (3,) for one set of costs.
            normalizer: see :attr:`normalizer`.
        """
        arr = np.asarray(costs, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != len(ALL_ACTIONS):
            raise InputError(f"costs: expected shape (N, 3) [no, coarse, full], found {np.shape(costs)}")
        if np.any(arr[:, Action.NO_VISION] != 0):
            raise InputError("costs: the NO_VISION column must be 0 (no vision token is spent)")
        if np.any(arr[np.isfinite(arr)] < 0):
            raise InputError("costs: vision-token counts must be >= 0")
        means = []
        for action in (Action.COARSE_VISION, Action.FULL_VISION):
            col = arr[:, action]
            col = col[np.isfinite(col)]
            means.append(float(col.mean()) if col.size else float("nan"))
        coarse = 0.0 if np.isnan(means[0]) else means[0]  # coarse never measured (binary policies)
        return cls(c_coarse=coarse, c_full=means[1], normalizer=normalizer)

    @property
    def scale(self) -> float:
        """The divisor of the normalised costs."""
        return self.normalizer if self.normalizer > 0 else self.c_full

    def costs(self, actions: Sequence[Action] = ALL_ACTIONS, normalized: bool = False) -> np.ndarray:
        """Cost of each action in ``actions``, (len(actions),) float64 (tokens, or / :attr:`scale`)."""
        table = {Action.NO_VISION: 0.0, Action.COARSE_VISION: self.c_coarse, Action.FULL_VISION: self.c_full}
        vec = np.array([table[Action(a)] for a in actions], dtype=np.float64)
        return vec / self.scale if normalized else vec

    def cost_of(self, action: Action, normalized: bool = False) -> float:
        return float(self.costs((action,), normalized)[0])

    def expected_cost(self, action_probs: Any, actions: Sequence[Action] = ALL_ACTIONS,
                      normalized: bool = False) -> Any:
        """Expected cost ``sum_a p(a) c(a)``.

        Args:
            action_probs: (..., len(actions)) probabilities (numpy array or torch tensor; a torch
                input gives a torch output on its device, differentiable).
            actions: the action behind each column (binary heads: ``(NO_VISION, FULL_VISION)``).
            normalized: costs divided by :attr:`scale` (the loss's units) instead of tokens.
        Returns: (...) expected cost, same library as the input.
        """
        vec = self.costs(actions, normalized)
        if np.shape(action_probs)[-1] != len(vec):
            raise ValueError(f"action_probs: last dim must be {len(vec)} (one per action), "
                             f"found shape {tuple(np.shape(action_probs))}")
        if hasattr(action_probs, "new_tensor"):  # torch
            return action_probs @ action_probs.new_tensor(vec)
        return np.asarray(action_probs, dtype=np.float64) @ vec

    def to_json(self) -> dict:
        return {"c_no": 0.0, "c_coarse": self.c_coarse, "c_full": self.c_full, "scale": self.scale}
