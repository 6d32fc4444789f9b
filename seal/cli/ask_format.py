"""Terminal rendering of the agent's events for ``seal ask`` (one printer per question).

:class:`EventPrinter` is an event sink (:mod:`seal.agent.events`): each event becomes one or a few
lines as it happens, so a user watches the decision, the listed targets and every search step
arrive. Colour (ANSI) only when the stream is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}
ACTION_LABEL = {"no": "NO_VISION", "coarse": "COARSE_VISION", "full": "FULL_VISION"}


def use_color(stream: TextIO) -> bool:
    """ANSI colours when ``stream`` is a terminal and ``NO_COLOR`` is not set."""
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ


class EventPrinter:
    """Prints agent events to ``stream``; call it with each event dict.

    Args:
        stream: where the lines go (stdout by default).
        color: ANSI colours (default: :func:`use_color`).
        steps: print every search step (False: only each target's summary).
    """

    def __init__(self, stream: TextIO | None = None, color: bool | None = None, steps: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.color = use_color(self.stream) if color is None else color
        self.steps = steps

    def __call__(self, event: dict) -> None:
        handler = getattr(self, f"_{event['type']}", None)
        if handler is not None:
            for line in handler(event):
                print(line, file=self.stream, flush=True)

    def c(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return "".join(f"\033[{_CODES[s]}m" for s in styles) + text + "\033[0m"

    # ---- one method per event type; each returns its lines ------------------------------------
    def _text_pass(self, ev: dict) -> list[str]:
        return [f"{self.c('text pass', 'bold')}  entropy {ev['entropy']:.3f} nats, margin {ev['margin']:.3f}"
                f"{'' if ev.get('cache_kept') else '  (no KV cache kept)'}"]

    def _decision(self, ev: dict) -> list[str]:
        probs = ev.get("probs") or {}
        p = "  ".join(f"{k} {float(v):.2f}" for k, v in probs.items())
        flags = []
        if ev.get("fallback_fired"):
            flags.append(self.c("fallback fired", "yellow"))
        if ev.get("forced"):
            flags.append(self.c("forced", "yellow"))
        extra = f"  [{', '.join(flags)}]" if flags else ""
        return [f"{self.c('decision', 'bold')}   {self.c(ACTION_LABEL.get(ev['action'], ev['action']), 'blue', 'bold')}"
                f"  ({ev.get('policy', '')}: {p}){extra}",
                f"           why: {ev.get('reason', '')}"]

    def _escalation(self, ev: dict) -> list[str]:
        return [f"{self.c('escalate', 'bold')}   {self.c('coarse -> full', 'yellow')}: the coarse view answered "
                f"{ev.get('answer', '')!r}; {ev.get('reason', '')}"]

    def _refusal(self, ev: dict) -> list[str]:
        lines = [f"{self.c('missing', 'bold')}    the model cannot see: "
                 + (", ".join(self.c(t, 'cyan') for t in ev["targets"]) or "(nothing usable)")]
        if ev.get("skipped"):
            lines.append(f"           not searched (over agent.search_targets_cap): {', '.join(ev['skipped'])}")
        return lines

    def _search_step(self, ev: dict) -> list[str]:
        if not self.steps:
            return []
        box = ",".join(f"{v:.0f}" for v in ev["box_xyxy"])
        score = float(ev["best_score"])
        s = self.c(f"{score:.2f}", "green" if score >= 0.5 else "dim")
        return [f"  {self.c(ev['target'], 'cyan')} #{ev['visit_order']:<3d} L{ev['level']} [{box}] "
                f"prio {float(ev['priority']):.3f} score {s} cue {ev['cue']}{_checked(ev.get('hit_check_score'))}"]

    def _search_done(self, ev: dict) -> list[str]:
        if ev["found"]:
            box = ",".join(f"{v:.0f}" for v in ev["box_xyxy"])
            verdict = self.c(f"found at [{box}]", "green")
        else:
            verdict = self.c("NOT found", "red")
        fb = " (fallback box)" if ev.get("fallback") else ""
        checks = f", {ev['hit_check_calls']} hit checks" if ev.get("hit_check_calls") else ""
        return [f"{self.c('search', 'bold')}     {self.c(ev['target'], 'cyan')}: {verdict}{fb}, score "
                f"{float(ev['score']):.2f}; {ev['nodes_visited']} nodes, {ev['model_calls']} model calls{checks}, "
                f"stop: {ev['stop_reason']}"]

    def _vwm(self, ev: dict) -> list[str]:
        lines = [f"{self.c('memory', 'bold')}     visual working memory:"]
        for e in ev["entries"]:
            if e["found"]:
                box = ",".join(f"{v:.0f}" for v in e["box_xyxy"])
                crop = " + crop" if e.get("has_crop") else ""
                lines.append(f"           {e['name']}: [{box}] score {float(e['score']):.2f}{crop}")
            else:
                lines.append(f"           {e['name']}: {self.c('not found', 'red')}")
        return lines

    def _answer(self, ev: dict) -> list[str]:
        return [f"{self.c('answer', 'bold')}     {self.c(str(ev['answer']), 'green', 'bold')}"
                + (f"  (option {ev['answer_index'] + 1}, {ev['protocol']})"
                   if ev.get("answer_index") is not None else "")]

    def _cost(self, ev: dict) -> list[str]:
        return [f"{self.c('cost', 'bold')}       {format_cost(ev)}"]


def _checked(hit_check_score: Any) -> str:
    """`` check 0.97`` when the VQA LLM checked the node's hit (``hit_check_score >= 0``), else ``""``."""
    return "" if hit_check_score is None or float(hit_check_score) < 0 else f" check {float(hit_check_score):.2f}"


def format_cost(cost: dict[str, Any]) -> str:
    """One line: vision tokens (and their split), calls, generated tokens, seconds, memory."""
    vt = cost.get("vision_tokens", 0)
    parts = [f"{k.replace('vision_tokens_', '')} {cost[k]}" for k in
             ("vision_tokens_global", "vision_tokens_crops", "vision_tokens_search", "vision_tokens_hit_check")
             if cost.get(k)]
    split = f" ({', '.join(parts)})" if parts else ""
    secs = cost.get("total_seconds", cost.get("seconds_total"))
    seconds = f", {float(secs):.2f} s" if secs is not None else ""
    mem = cost.get("peak_rss_mb")
    memory = f", peak RSS {float(mem):.0f} MB" if mem is not None else ""
    checks = f", {cost['hit_checks']} hit checks" if cost.get("hit_checks") else ""
    return (f"{vt} vision tokens{split}, {cost.get('llm_calls', 0)} LLM calls, {cost.get('search_calls', 0)} "
            f"search-model calls{checks}, {cost.get('generated_tokens', 0)} generated tokens{seconds}{memory}")
