"""The cost ledger: everything one question cost, by stage.

Every vision token, model call, generated token, wall-clock second and the peak memory are booked
here by the pipeline and copied into traces and evaluation rows.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator


@dataclass
class CostLedger:
    vision_tokens_global: int = 0
    """Vision tokens of the global view fed to the VQA LLM (0 for NO_VISION)."""
    vision_tokens_crops: int = 0
    """Vision tokens of the VWM crops fed to the VQA LLM."""
    vision_tokens_search: int = 0
    """Vision tokens the search model encoded (patches x tokens per patch)."""
    vision_tokens_hit_check: int = 0
    """Vision tokens the VQA LLM spent checking the search's hits (global view + one crop per box)."""
    hit_checks: int = 0
    """Boxes the hit check judged (the search model's crop matcher reads and VQA prompts alike; a
    crop read spends no vision token of an LLM)."""
    llm_calls: int = 0
    """Forward passes / generate calls of the VQA LLM (including the hit checks)."""
    search_calls: int = 0
    """Search-model calls (batched locate = 1, suggest_region = 1)."""
    search_nodes: int = 0
    """Nodes visited by the search, over all targets."""
    generated_tokens: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds per stage (text_pass, policy, global_view, search, answer, ...)."""
    peak_rss_mb: float = 0.0
    """Peak resident memory of this process (MB) when the ledger was closed."""

    @property
    def vision_tokens(self) -> int:
        """The cost of a question: every vision token spent on it."""
        return (self.vision_tokens_global + self.vision_tokens_crops + self.vision_tokens_search
                + self.vision_tokens_hit_check)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage: ``with ledger.stage("search"): ...`` (re-entering a name adds up)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def close(self) -> "CostLedger":
        self.peak_rss_mb = peak_rss_mb()
        return self

    def to_json(self) -> dict:
        d = asdict(self)
        d["vision_tokens"] = self.vision_tokens
        d["total_seconds"] = round(self.total_seconds, 4)
        d["seconds"] = {k: round(v, 4) for k, v in self.seconds.items()}
        return d


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
