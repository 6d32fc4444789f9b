"""Search budgets and the honest cost ledger of one target's search.

Three limits from :class:`SearchConfig`: ``max_nodes`` (nodes visited), ``max_model_calls``
(localizer calls: one batched ``locate`` or one ``suggest_region`` each) and ``deadline_s`` (wall
clock, 0 = none). Budgets are checked, never raised: the engine asks :meth:`Budget.stop_reason`
before popping a node and :meth:`Budget.call_blocker` before each model call, and ends the search
with the best answer so far.

Counting rules: every node popped is visited; every patch sent to ``locate`` is scored; the root's
``locate`` counts like any other call; ``set_image`` is timed (``localizer_seconds``) but is not a
model call.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from search.config import SearchConfig

T = TypeVar("T")


class Budget:
    """Counters of one search plus its limits. ``clock`` returns seconds (monotonic)."""

    def __init__(self, cfg: SearchConfig, clock: Callable[[], float] = time.perf_counter) -> None:
        self.cfg = cfg
        self.clock = clock
        self.started = clock()
        self.nodes_visited = 0
        self.nodes_scored = 0
        self.model_calls = 0
        self.localizer_seconds = 0.0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def out_of_time(self) -> bool:
        return self.cfg.deadline_s > 0 and self.elapsed() >= self.cfg.deadline_s

    def stop_reason(self) -> str | None:
        """``"max_nodes"`` or ``"deadline"`` when no further node may be visited, else None.

        The call budget does not stop visits: visiting an already located node costs no call.
        """
        if self.nodes_visited >= self.cfg.max_nodes:
            return "max_nodes"
        if self.out_of_time():
            return "deadline"
        return None

    def call_blocker(self, calls: int = 1) -> str | None:
        """``"max_model_calls"`` or ``"deadline"`` when ``calls`` more model calls are not allowed."""
        if self.model_calls + calls > self.cfg.max_model_calls:
            return "max_model_calls"
        if self.out_of_time():
            return "deadline"
        return None

    def timed(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a localizer call), adding its wall time to ``localizer_seconds``."""
        t0 = self.clock()
        try:
            return fn()
        finally:
            self.localizer_seconds += self.clock() - t0
