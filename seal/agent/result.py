"""``AgentResult``: everything one question produced (the pinned interface of issue 4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seal.agent.events import box_list

if TYPE_CHECKING:
    from search.result import SearchResult
    from seal.policy.policy import Decision
    from vwm.layout import VisualWorkingMemory
    from vwm.ledger import CostLedger


@dataclass
class AgentResult:
    """One answered question.

    Attributes:
        question / options: as asked (``options`` None for a free-form question).
        answer: the chosen option's text, or the free-form answer without options.
        answer_index: index of the chosen option, or None.
        option_scores: per option, the protocol's score (likelihood: mean log-prob; letter: prob).
        action: ``"no" | "coarse" | "full"``, the action run (forced or decided; ``full`` after an
            escalation).
        decision: the policy's :class:`~seal.policy.policy.Decision` (before any forcing).
        reason: why this action (the decision's reason, or the forcing note + the decision's reason).
        text_pass: ``{"entropy", "margin"}`` of the text-only pass.
        targets: the objects the VQA model listed as missing ([] when it did not refuse).
        search: one :class:`~search.result.SearchResult` per searched target (full-image px boxes).
        vwm: the working memory of the final answer (FULL with a search), else None. Its global image
            is the FULL view; its entries' boxes are in that view's pixel frame (same normalised
            coordinates as the full image).
        ledger: the question's :class:`~vwm.ledger.CostLedger` (closed).
        events: the event dicts emitted, in order (see :mod:`seal.agent.events`).
        cache_reuse: ``{"enabled", "used", "note"}``: the text pass's KV cache reuse.
        free_answer: the FULL action's first free-form reply (the refusal, when it refused), or None.
        policy: the policy's name (``learned`` or a baseline).
        escalation: why a COARSE decision escalated to FULL (:mod:`seal.policy.escalation`), or None.
    """

    question: str
    options: list[str] | None
    answer: str
    answer_index: int | None
    action: str
    decision: "Decision"
    reason: str
    text_pass: dict
    targets: list[str]
    search: list["SearchResult"]
    vwm: "VisualWorkingMemory | None"
    ledger: "CostLedger"
    events: list[dict] = field(default_factory=list)
    option_scores: list[float] | None = None
    cache_reuse: dict = field(default_factory=dict)
    free_answer: str | None = None
    policy: str = ""
    skipped_targets: list[str] = field(default_factory=list)
    escalation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (boxes in full-image pixels; no events: see :attr:`events`)."""
        return {
            "question": self.question,
            "options": self.options,
            "answer": self.answer,
            "answer_index": self.answer_index,
            "option_scores": None if self.option_scores is None else [round(float(s), 6) for s in self.option_scores],
            "action": self.action,
            "reason": self.reason,
            "policy": self.policy,
            "decision": self.decision.to_json(),
            "text_pass": {k: round(float(v), 6) for k, v in self.text_pass.items()},
            "free_answer": self.free_answer,
            "targets": list(self.targets),
            "skipped_targets": list(self.skipped_targets),
            "escalation": self.escalation,
            "search": [{"target": r.target, "found": bool(r.found),
                        "box_xyxy": box_list(r.box_xyxy) if r.found else None,
                        "nodes_visited": int(r.nodes_visited), "score": round(float(r.score), 4),
                        "model_calls": int(r.model_calls), "stop_reason": r.stop_reason,
                        "fallback": bool(r.fallback)} for r in self.search],
            "vwm": self._vwm_json(),
            "cache_reuse": dict(self.cache_reuse),
            "cost": self.ledger.to_json(),
        }

    def _vwm_json(self) -> list[dict] | None:
        for ev in reversed(self.events):
            if ev["type"] == "vwm":
                return ev["entries"]
        return None
