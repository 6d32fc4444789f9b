"""The three value-of-vision actions and the two action spaces a policy can choose from.

Every array over actions in :mod:`seal.policy` (probabilities, task losses, costs, correctness)
is indexed by :class:`Action` value: column 0 = NO_VISION, 1 = COARSE_VISION, 2 = FULL_VISION.
A *binary* policy head only scores NO_VISION and FULL_VISION; :func:`space_actions` gives the
actions behind each column of a head's output.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

ActionSpace = Literal["binary", "ternary"]


class Action(IntEnum):
    NO_VISION = 0
    """Answer from the text-only pass; no vision token is spent."""
    COARSE_VISION = 1
    """Answer from the global view resized to the coarse budget."""
    FULL_VISION = 2
    """Answer from the global view at the full budget plus V* search and working-memory crops."""

    @property
    def short(self) -> str:
        """``"no"``, ``"coarse"`` or ``"full"`` (the names used in configs, logs and reasons)."""
        return SHORT_NAMES[self]

    @classmethod
    def from_short(cls, name: str) -> "Action":
        for action, short in SHORT_NAMES.items():
            if short == name:
                return action
        raise ValueError(f"unknown action {name!r}; expected one of {list(SHORT_NAMES.values())}")


SHORT_NAMES: dict[Action, str] = {
    Action.NO_VISION: "no",
    Action.COARSE_VISION: "coarse",
    Action.FULL_VISION: "full",
}
ALL_ACTIONS: tuple[Action, ...] = (Action.NO_VISION, Action.COARSE_VISION, Action.FULL_VISION)
N_ACTIONS = len(ALL_ACTIONS)


def space_actions(action_space: ActionSpace) -> tuple[Action, ...]:
    """The actions behind a head's output columns: binary -> (NO, FULL), ternary -> (NO, COARSE, FULL)."""
    if action_space == "binary":
        return (Action.NO_VISION, Action.FULL_VISION)
    if action_space == "ternary":
        return ALL_ACTIONS
    raise ValueError(f"unknown action space {action_space!r}; expected 'binary' or 'ternary'")
