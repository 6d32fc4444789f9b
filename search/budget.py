"""Search budgets: nodes visited, model calls, wall clock. Checked, never raised."""

from __future__ import annotations

import time

from search.config import SearchConfig


class Budget:
    def __init__(self, cfg: SearchConfig) -> None:
        self.cfg = cfg
        self.started = time.perf_counter()
        self.nodes_visited = 0
        self.model_calls = 0
        self.nodes_scored = 0
        self.localizer_seconds = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def exhausted(self, calls_needed: int = 0) -> str | None:
        """The name of the budget that is used up (before visiting another node), else None."""
        if self.nodes_visited >= self.cfg.max_nodes:
            return "max_nodes"
        if self.model_calls + calls_needed > self.cfg.max_model_calls:
            return "max_model_calls"
        if self.cfg.deadline_s > 0 and self.elapsed() >= self.cfg.deadline_s:
            return "deadline"
        return None

    def can_call(self) -> bool:
        return self.model_calls < self.cfg.max_model_calls
