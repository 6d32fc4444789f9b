"""Write one answered question as a trace directory (what ``seal ask --trace-dir`` produces).

Layout (read back by :func:`seal.report.write_html`)::

    D/trace.json                 AgentResult.to_json() + "events" + "image" (+ size)
    D/global_view_<level>.png    the global view the answer read (coarse / full), when one was used
    D/vwm_crop_<k>.png           the working-memory crops fed to the final answer
    D/<k>_<target>/              per searched target: trace.json + search_graph.graphml (the search
                                 tree, networkx), search_overview.png, heatmaps/, final_crop.png
    D/index.html                 the self-contained page showing all of it
    D/config.yaml, D/run.json    the resolved config and the run record

Several questions in one interactive session go to ``D/q01/``, ``D/q02/``, ... (see ``seal ask``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seal.agent.result import AgentResult
    from seal.agent.views import ImageViews


def write_trace_dir(out: str | Path, result: "AgentResult", views: "ImageViews") -> Path:
    """Write ``result`` (about the image of ``views``) into ``out``; returns the HTML page's path.

    Args:
        out: the trace directory (created; files of the same names are overwritten).
        result: the answered question.
        views: the agent's image views (full-resolution image for renders, cached global views).
    """
    from search.render import target_folder, write_search_trace
    from seal.report import write_html

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    record = result.to_json()
    record["events"] = result.events
    record["image"] = views.path
    record["image_size"] = list(views.image.size)
    (root / "trace.json").write_text(json.dumps(record, indent=1), encoding="utf-8")

    level = {"coarse": "coarse", "full": "full"}.get(result.action)
    if level is not None:
        views.view(level).save(root / f"global_view_{level}.png")
    if result.vwm is not None:
        k = 0
        for entry in result.vwm.entries:
            if entry.crop is not None:
                entry.crop.save(root / f"vwm_crop_{k}.png")
                k += 1
    for k, search in enumerate(result.search, start=1):
        write_search_trace(views.source, search.trace, target_folder(root, k, search.target))
    return write_html(root)
