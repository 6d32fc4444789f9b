"""``SearchResult``: what one target's search found and what it cost."""

from __future__ import annotations

from dataclasses import dataclass, field

from search.trace import SearchTrace

Box = tuple[float, float, float, float]


@dataclass
class SearchResult:
    target: str
    strategy: str
    found: bool
    """True for a confident hit (score > confidence_high), or for the anytime fallback's best box
    when it scores >= confidence_low (then ``fallback`` is True too)."""
    box_xyxy: Box | None
    """Full-image pixels, upright frame; None when not found."""
    score: float
    instances: list[tuple[Box, float]]
    nodes_visited: int
    nodes_scored: int
    model_calls: int
    seconds: float
    localizer_seconds: float
    stop_reason: str
    trace: SearchTrace
    fallback: bool = False
    """The box came from the anytime fallback (no confident hit)."""
    extra: dict = field(default_factory=dict)

    @property
    def engine_seconds(self) -> float:
        """Time spent in the search itself, outside localizer calls."""
        return max(0.0, self.seconds - self.localizer_seconds)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "strategy": self.strategy,
            "found": self.found,
            "fallback": self.fallback,
            "box_xyxy": [round(float(v), 2) for v in self.box_xyxy] if self.box_xyxy is not None else None,
            "score": round(float(self.score), 4),
            "instances": [{"box_xyxy": [round(float(v), 2) for v in b], "score": round(float(s), 4)}
                          for b, s in self.instances],
            "nodes_visited": self.nodes_visited,
            "nodes_scored": self.nodes_scored,
            "model_calls": self.model_calls,
            "seconds": round(self.seconds, 4),
            "localizer_seconds": round(self.localizer_seconds, 4),
            "stop_reason": self.stop_reason,
            **self.extra,
        }
