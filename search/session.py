"""``SearchSession``: several targets searched in one image, sharing the localizer's caches.

``set_image`` is called once; the localizer's per-image feature cache then serves every target
(e.g. both objects of a relative-position question), which ``stats()`` reports.
"""

from __future__ import annotations

from typing import Callable, Iterable

from search.config import SearchConfig
from search.engine import StepEvent, run_search
from search.image_source import ImageSource
from search.localizer import Localizer, LocalizerStats
from search.result import SearchResult


class SearchSession:
    def __init__(self, localizer: Localizer, image: ImageSource, cfg: SearchConfig) -> None:
        self.localizer, self.image, self.cfg = localizer, image, cfg
        localizer.set_image(image)
        self.results: list[SearchResult] = []

    def search(self, target: str, on_step: Callable[[StepEvent], None] | None = None,
               cfg: SearchConfig | None = None) -> SearchResult:
        result = run_search(self.localizer, self.image, target, cfg or self.cfg, on_step, set_image=False)
        self.results.append(result)
        return result

    def search_many(self, targets: Iterable[str], on_step: Callable[[StepEvent], None] | None = None) -> list[SearchResult]:
        """Each distinct target once (case-insensitive), in order."""
        seen: set[str] = set()
        out = []
        for t in targets:
            if t.lower() in seen:
                continue
            seen.add(t.lower())
            out.append(self.search(t, on_step))
        return out

    def stats(self) -> LocalizerStats:
        return self.localizer.stats()

    def summary(self) -> dict:
        s = self.stats()
        return {"targets": len(self.results), "nodes_visited": sum(r.nodes_visited for r in self.results),
                "model_calls": sum(r.model_calls for r in self.results),
                "patches_encoded": s.patches_encoded, "encode_cache_hits": s.encode_cache_hits}
