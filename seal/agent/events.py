"""The events the agent emits while it answers, as plain JSON-ready dicts.

Each event is ``{"type": <name>, ...}``; the types, in the order one question emits them:

================  =================================================================================
``text_pass``     ``entropy`` (nats), ``margin`` (top-1 - top-2 prob), ``cache_kept`` (bool)
``decision``      ``action`` (no|coarse|full), ``chosen_action``, ``probs`` {no, coarse, full},
                  ``reason``, ``fallback_fired``, ``forced`` (bool), ``policy`` (name)
``refusal``       ``text`` (the model's reply), ``targets`` (names it listed), ``searched``
                  (the names that will be searched), ``skipped`` (over ``search_targets_cap``)
``search_step``   ``target`` + every :class:`search.engine.StepEvent` field (boxes: full-image xyxy px)
``search_done``   ``target``, ``found``, ``box_xyxy`` (full-image px or None), ``score``,
                  ``nodes_visited``, ``model_calls``, ``stop_reason``
``vwm``           ``entries``: [{name, found, box_xyxy (full-image px or None), score}]
``answer``        ``answer``, ``answer_index`` (None without options), ``option_scores`` (or None),
                  ``protocol``
``cost``          the :meth:`vwm.ledger.CostLedger.to_json` dict
================  =================================================================================

``refusal`` .. ``vwm`` appear only when the FULL action's free answer is the refusal.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Sequence

EVENT_TYPES = ("text_pass", "decision", "refusal", "search_step", "search_done", "vwm", "answer", "cost")

EventSink = Callable[[dict], None]


def box_list(box: Sequence[float] | None) -> list[float] | None:
    """A box as a JSON list rounded to 0.01 px (None stays None)."""
    return None if box is None else [round(float(v), 2) for v in box]


def search_step(target: str, step: Any) -> dict:
    """A :class:`search.engine.StepEvent` as a ``search_step`` event."""
    ev = {k: _plain(v) for k, v in asdict(step).items()}
    ev["box_xyxy"] = box_list(step.box_xyxy)
    ev["best_box_xyxy"] = box_list(step.best_box_xyxy)
    return {"type": "search_step", "target": target, **ev}


def search_done(result: Any) -> dict:
    """A :class:`search.result.SearchResult` summary as a ``search_done`` event."""
    return {"type": "search_done", "target": result.target, "found": bool(result.found),
            "box_xyxy": box_list(result.box_xyxy) if result.found else None,
            "score": round(float(result.score), 4), "nodes_visited": int(result.nodes_visited),
            "model_calls": int(result.model_calls), "stop_reason": result.stop_reason,
            "fallback": bool(result.fallback), "hit_check_calls": int(result.hit_check_calls),
            "hit_check_score": None if result.hit_check_score is None else round(float(result.hit_check_score), 4)}


def vwm_entries(entries: Sequence[Any], to_full: Callable[[Sequence[float]], Sequence[float]]) -> list[dict]:
    """VWM entries as dicts; ``to_full`` maps an entry's box (its view frame) back to full-image px."""
    return [{"name": e.name, "found": bool(e.found),
             "box_xyxy": box_list(to_full(e.box_xyxy)) if e.box_xyxy is not None else None,
             "score": round(float(e.score), 4), "has_crop": e.crop is not None} for e in entries]


def _plain(v: Any) -> Any:
    """numpy scalars and tuples -> plain Python for JSON."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return v
