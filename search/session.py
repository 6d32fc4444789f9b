"""``SearchSession``: several targets searched in one image, sharing the localizer's caches.

``set_image`` is called once, when the session is made; every search then runs with
``set_image=False``, so the localizer's per-image feature cache (e.g. the root patch's encoding)
serves every target, e.g. both objects of a relative-position question. What the localizer did is
read from its own ``stats()`` (patches encoded vs. served from the cache).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Iterable

from search.config import SearchConfig
from search.engine import StepEvent, run_search
from seal.core.image_source import ImageSource
from search.localizer import Localizer, LocalizerStats
from search.result import SearchResult
from search.hit_check.config import HitCheckConfig
from search.hit_check.protocol import HitCheck


class SearchSession:
    """One image, one localizer, many targets.

    Args:
        localizer: any :class:`~search.localizer.Localizer`; ``set_image(image)`` is called here.
        image: the upright image all targets are searched in.
        cfg: the search config of every target (``search(..., cfg=...)`` overrides it per call).
        hit_check: an optional :class:`~search.hit_check.protocol.HitCheck` checking confident hits;
            its ``set_image(image)`` is called here too.
        check_cfg: the ``hit_check`` section (zoom and rules); None = its defaults.
        seed: the run's seed (the random baselines' order).
    """

    def __init__(self, localizer: Localizer, image: ImageSource, cfg: SearchConfig,
                 hit_check: HitCheck | None = None, check_cfg: HitCheckConfig | None = None, seed: int = 0) -> None:
        self.localizer, self.image, self.cfg, self.hit_check = localizer, image, cfg, hit_check
        self.check_cfg, self.seed = check_cfg or HitCheckConfig(), seed
        t0 = time.perf_counter()
        localizer.set_image(image)
        if hit_check is not None:
            hit_check.set_image(image)
        self.set_image_seconds = time.perf_counter() - t0
        self.results: list[SearchResult] = []

    def search(self, target: str, on_step: Callable[[StepEvent], None] | None = None,
               cfg: SearchConfig | None = None) -> SearchResult:
        """Search one target (the image is already set); the result is also kept in ``results``."""
        result = run_search(self.localizer, self.image, target, cfg or self.cfg, on_step, set_image=False,
                            hit_check=self.hit_check, check_cfg=self.check_cfg, seed=self.seed)
        self.results.append(result)
        return result

    def search_many(self, targets: Iterable[str],
                    on_step: Callable[[StepEvent], None] | None = None) -> list[SearchResult]:
        """One result per given target, in order. A repeated name (compared case- and
        whitespace-insensitively) is searched once; its later entries are copies of the first
        result with ``target`` set to the name as given."""
        done: dict[str, SearchResult] = {}
        out = []
        for target in targets:
            key = " ".join(target.lower().split())
            if key in done:
                out.append(replace(done[key], target=target))
            else:
                done[key] = self.search(target, on_step)
                out.append(done[key])
        return out

    def stats(self) -> LocalizerStats:
        """The localizer's own counters since ``set_image`` (all targets of this image)."""
        return self.localizer.stats()

    def summary(self) -> dict:
        """Totals over the searches run so far, plus the localizer's cache statistics."""
        s = self.stats()
        return {
            "targets": len(self.results),
            "found": sum(r.found for r in self.results),
            "nodes_visited": sum(r.nodes_visited for r in self.results),
            "nodes_scored": sum(r.nodes_scored for r in self.results),
            "model_calls": sum(r.model_calls for r in self.results),
            "seconds": sum(r.seconds for r in self.results),
            "localizer_seconds": sum(r.localizer_seconds for r in self.results),
            "hit_check_calls": sum(r.hit_check_calls for r in self.results),
            "set_image_seconds": self.set_image_seconds,
            "patches_encoded": s.patches_encoded,
            "encode_cache_hits": s.encode_cache_hits,
            **{f"localizer_{k}": v for k, v in s.extra.items()},
        }
