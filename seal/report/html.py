"""A self-contained HTML page of one answered question (one trace directory).

Reads what the ask command writes into a trace directory (every piece optional except ``trace.json``)::

    TRACE/trace.json               AgentResult.to_json() (+ optional "events"): question, options,
                                   answer, action, reason, decision.probs, targets, search, vwm, cost
    TRACE/vwm_crop_*.png           the working-memory crops fed to the final answer
    TRACE/*.png                    other views (e.g. the global view), shown as they are
    TRACE/<k>_<target>/            per searched target (or TRACE itself for a lone target):
        search_overview.png        visited boxes over the image
        heatmaps/*.png             per-step heatmaps, in file-name (= visit) order
        final_crop.png             the found box with context

and writes ``TRACE/index.html``: inline CSS, every PNG inlined as a ``data:image/png;base64`` URI,
no script and no external resource, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from seal.core.errors import InputError

TRACE_FILE = "trace.json"
INDEX_FILE = "index.html"
TARGET_FILES = ("search_overview.png", "final_crop.png", "heatmaps")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 12px} h2{font-size:1.15em;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:16px 0 6px}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:12px 16px;margin:8px 0}
.answer{font-size:1.2em;font-weight:600;color:#0a6b2d} .action{display:inline-block;padding:2px 10px;
border-radius:12px;background:#1f5fbf;color:#fff;font-weight:600} .muted{color:#666}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 10px;text-align:left}
th{background:#f0f0f0} img{max-width:100%;border:1px solid #ccc;border-radius:4px}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start} figure{margin:0;max-width:520px}
figcaption{font-size:.85em;color:#555} .heat img{max-width:200px} .chosen{font-weight:700}
.found{color:#0a6b2d} .missing{color:#b00020}
"""


def write_html(trace_dir: str | Path) -> Path:
    """Render ``trace_dir/trace.json`` and its PNGs into ``trace_dir/index.html``; returns its path.

    Raises:
        InputError: no trace directory / ``trace.json``, or the JSON is malformed.
    """
    root = Path(trace_dir)
    trace = _read_trace(root)
    parts = [_header(trace), _decision(trace), _targets(trace, root), _vwm(trace, root), _other_views(root),
             _cost(trace.get("cost") or {})]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(_short(trace.get('question', 'trace')))}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
    out = root / INDEX_FILE
    out.write_text(page, encoding="utf-8")
    return out


def _read_trace(root: Path) -> dict:
    path = root / TRACE_FILE
    if not root.is_dir():
        raise InputError("trace directory not found", root)
    if not path.is_file():
        raise InputError(f"no {TRACE_FILE} in the trace directory (written by `seal ask --trace-dir`)", root)
    try:
        trace = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}", path) from exc
    if not isinstance(trace, dict):
        raise InputError(f"expected a JSON object, found {type(trace).__name__}", path)
    return trace


# ---- sections -----------------------------------------------------------------------------------
def _header(trace: dict) -> str:
    options = trace.get("options") or []
    chosen = trace.get("answer_index")
    items = "".join(f"<li class=\"{'chosen' if i == chosen else ''}\">{_e(o)}</li>" for i, o in enumerate(options))
    opts = f"<ol type=\"A\">{items}</ol>" if items else ""
    return (f"<h1>{_e(trace.get('question', '(no question)'))}</h1>{opts}"
            f"<div class=\"card\">Answer: <span class=\"answer\" id=\"answer\">{_e(trace.get('answer', ''))}</span>"
            f"</div>")


def _decision(trace: dict) -> str:
    decision = trace.get("decision") or {}
    probs = decision.get("probs") or {}
    text_pass = trace.get("text_pass") or {}
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_num(v)}</td></tr>" for k, v in probs.items())
    signals = ", ".join(f"{_e(k)} {_num(v)}" for k, v in text_pass.items())
    fallback = " (fallback fired)" if decision.get("fallback_fired") else ""
    if trace.get("escalation"):
        fallback += " (escalated from coarse)"
    policy = f"<span class=\"muted\">policy {_e(trace['policy'])}</span>" if trace.get("policy") else ""
    return ("<h2>Action</h2><div class=\"card\">"
            f"<span class=\"action\">{_e(trace.get('action', '?'))}</span>{_e(fallback)} {policy}"
            f"<p>Why: {_e(trace.get('reason') or decision.get('reason') or '')}</p>"
            + (f"<p class=\"muted\">Text pass: {signals}</p>" if signals else "")
            + (f"<table><tr><th>action</th><th>p</th></tr>{rows}</table>" if rows else "") + "</div>")


def _targets(trace: dict, root: Path) -> str:
    targets = list(trace.get("targets") or [])
    searches = list(trace.get("search") or [])
    folders = _target_folders(root)
    if not targets and not searches and not folders:
        return "<h2>Targets</h2><p class=\"muted\">No search: the model did not list missing targets.</p>"
    out = ["<h2>Targets</h2>"]
    if targets:
        out.append("<p>Listed as missing: " + ", ".join(_e(t) for t in targets) + "</p>")
    names = [s.get("target", f"target {i + 1}") for i, s in enumerate(searches)] or targets
    used: set[Path] = set()
    for i, name in enumerate(names):
        info = searches[i] if i < len(searches) else {}
        folder = _folder_for(name, i, folders, used)
        out.append(_target_card(name, info, folder))
    for folder in folders:  # renders nobody claimed: still show them
        if folder not in used:
            out.append(_target_card(folder.name, {}, folder))
    return "".join(out)


def _target_card(name: str, info: dict, folder: Path | None) -> str:
    verdict = ""
    if info:
        found = bool(info.get("found"))
        box = info.get("box_xyxy")
        verdict = (f"<span class=\"{'found' if found else 'missing'}\">{'found' if found else 'not found'}</span>"
                   + (f" at [{', '.join(_num(v, 0) for v in box)}]" if found and box else "")
                   + f"; score {_num(info.get('score'))}, {_e(info.get('nodes_visited', '?'))} nodes, "
                   f"{_e(info.get('model_calls', '?'))} model calls"
                   + (f", {_e(info['hit_check_calls'])} hit checks" if info.get("hit_check_calls") else "")
                   + (f" (the box's {_num(info['hit_check_score'])})"
                      if info.get("hit_check_score") is not None else "")
                   + (f", stop: {_e(info.get('stop_reason'))}" if info.get("stop_reason") else ""))
    parts = [f"<div class=\"card\"><h3>{_e(name)}</h3><p>{verdict}</p>"]
    if folder is not None:
        figures = [_figure(folder / "search_overview.png", "search path"),
                   _figure(folder / "final_crop.png", "final crop")]
        parts.append("<div class=\"row\">" + "".join(f for f in figures if f) + "</div>")
        heat = sorted((folder / "heatmaps").glob("*.png"), key=_natural) if (folder / "heatmaps").is_dir() else []
        if heat:
            parts.append("<h3>Per-step heatmaps</h3><div class=\"row heat\">"
                         + "".join(_figure(p, p.stem) for p in heat) + "</div>")
    else:
        parts.append("<p class=\"muted\">No search renders for this target.</p>")
    return "".join(parts) + "</div>"


def _vwm(trace: dict, root: Path) -> str:
    entries = trace.get("vwm") or []
    crops = sorted(root.glob("vwm_crop_*.png"), key=_natural)
    if not entries and not crops:
        return ""
    rows = "".join(f"<tr><td>{_e(e.get('name'))}</td><td>{'yes' if e.get('found') else 'no'}</td>"
                   f"<td>{_e(e.get('box_xyxy'))}</td><td>{_num(e.get('score'))}</td></tr>" for e in entries)
    table = f"<table><tr><th>entry</th><th>found</th><th>box (full-image xyxy px)</th><th>score</th></tr>{rows}</table>"
    return ("<h2>Visual working memory</h2><div class=\"card\">" + (table if rows else "")
            + "<div class=\"row\">" + "".join(_figure(p, p.stem) for p in crops) + "</div></div>")


def _other_views(root: Path) -> str:
    views = [p for p in sorted(root.glob("*.png"), key=_natural)
             if not p.name.startswith("vwm_crop_") and p.name not in ("search_overview.png", "final_crop.png")]
    if not views:
        return ""
    return "<h2>Views</h2><div class=\"row\">" + "".join(_figure(p, p.stem) for p in views) + "</div>"


def _cost(cost: dict) -> str:
    if not cost:
        return ""
    scalars = [(k, v) for k, v in cost.items() if not isinstance(v, dict)]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_num(v)}</td></tr>" for k, v in scalars)
    stages = cost.get("seconds") or {}
    stage_rows = "".join(f"<tr><td>{_e(k)}</td><td>{_num(v, 4)}</td></tr>" for k, v in stages.items())
    return ("<h2>Cost</h2><div class=\"row\"><table id=\"cost\"><tr><th>item</th><th>value</th></tr>"
            f"{rows}</table>" + (f"<table><tr><th>stage</th><th>seconds</th></tr>{stage_rows}</table>"
                                 if stage_rows else "") + "</div>")


# ---- helpers ------------------------------------------------------------------------------------
def _target_folders(root: Path) -> list[Path]:
    """Folders holding a target's renders: sub-folders in name order, else ``root`` itself."""
    subs = [d for d in sorted(root.iterdir(), key=_natural)
            if d.is_dir() and any((d / f).exists() for f in TARGET_FILES)]
    if subs:
        return subs
    return [root] if any((root / f).exists() for f in TARGET_FILES) else []


def _folder_for(name: str, index: int, folders: list[Path], used: set[Path]) -> Path | None:
    """The folder whose name contains the target's slug, else the ``index``-th unclaimed one."""
    slug = _slug(name)
    match = next((f for f in folders if f not in used and slug and slug in _slug(f.name)), None)
    if match is None:
        free = [f for f in folders if f not in used]
        match = free[0] if free and index < len(folders) else None
    if match is not None:
        used.add(match)
    return match


def _figure(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{_e(caption)}\">"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return _e(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _short(text: Any, n: int = 80) -> str:
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)
