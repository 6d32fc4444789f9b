"""``SearchTrace``: the search tree as a networkx ``DiGraph`` plus the heatmaps that guided it.

Node ids are ints in creation order (0 = root); edges go parent -> child. Every node has exactly
the attributes :data:`NODE_ATTRS` (all JSON-able):

- ``box_xyxy``: 4 floats, the region the localizer looked at, full-image pixels;
- ``level`` (root 0), ``parent`` (-1 for the root), ``priority`` (frontier priority), ``leaf``;
- ``visit_order``: 1-based, 0 if never visited;
- ``best_score`` / ``best_box_xyxy``: the node's best detection (``[]`` when none);
- ``cue``: ``"target"`` (the target heatmap guided the children), ``"context"`` (the contextual
  cue replaced a weak target heatmap), ``"none"`` (not expanded: leaf, stop, budget or unvisited);
- ``zoom_score``: the best score of the leaf-scale window when a confident hit above the leaves
  was looked at again (``hit_check.zoom``; ``best_score`` /
  ``best_box_xyxy`` are then the window's), -1.0 when none was;
- ``hit_check_score``: the hit check's highest probability for this node's confident boxes
  (:mod:`search.hit_check.rules`), -1.0 when it was not asked;
- ``heatmap_max``: max logit of the node's *target* heatmap (the value compared with
  ``SearchConfig.cue_threshold``);
- ``model_calls`` / ``seconds``: calls made and wall time spent visiting the node (the root's
  own ``locate`` is charged to the root), so they sum to the search's totals.

Graph attributes (``graph.graph``): exactly :data:`GRAPH_ATTRS` (``hit_check_calls``: boxes the
hit check judged; ``hit_check_score``: its probability for the returned box, -1.0 when none). ``heatmaps`` maps each
visited node id to the ``(h, w)`` float32 logits over its box that guided its children (the target heatmap,
or the contextual cue when ``cue == "context"``; the target heatmap for nodes not expanded).
``config`` is the :class:`SearchConfig` as a dict, written next to the graph in the JSON form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

NODE_ATTRS = ("box_xyxy", "level", "parent", "priority", "visit_order", "best_score", "best_box_xyxy", "cue",
              "zoom_score", "hit_check_score", "heatmap_max", "model_calls", "seconds", "leaf")
GRAPH_ATTRS = ("target", "strategy", "found", "box_xyxy", "score", "nodes_visited", "model_calls", "seconds",
               "stop_reason", "image_width", "image_height", "hit_check_calls", "hit_check_score")
HEATMAP_DECIMALS = 3
"""Heatmap logits are rounded to this many decimals in JSON."""


class SearchTrace:
    def __init__(self, graph: nx.DiGraph | None = None, heatmaps: dict[int, np.ndarray] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.graph = graph if graph is not None else nx.DiGraph()
        self.heatmaps: dict[int, np.ndarray] = heatmaps if heatmaps is not None else {}
        self.config: dict[str, Any] = config if config is not None else {}

    def add_node(self, node_id: int, box_xyxy: Any, level: int, parent: int, priority: float, leaf: bool) -> None:
        """A new, not yet visited node (and the edge from its parent)."""
        self.graph.add_node(node_id, box_xyxy=[float(v) for v in box_xyxy], level=int(level), parent=int(parent),
                            priority=float(priority), visit_order=0, best_score=0.0, best_box_xyxy=[],
                            cue="none", zoom_score=-1.0, hit_check_score=-1.0, heatmap_max=0.0, model_calls=0,
                            seconds=0.0, leaf=bool(leaf))
        if parent >= 0:
            self.graph.add_edge(parent, node_id)

    def update(self, node_id: int, **attrs: Any) -> None:
        unknown = set(attrs) - set(NODE_ATTRS)
        if unknown:
            raise KeyError(f"not trace node attributes: {sorted(unknown)}")
        self.graph.nodes[node_id].update(attrs)

    def set_summary(self, **attrs: Any) -> None:
        """Set the graph attributes; exactly :data:`GRAPH_ATTRS` are required."""
        if set(attrs) != set(GRAPH_ATTRS):
            raise KeyError(f"trace graph attributes: expected {sorted(GRAPH_ATTRS)}, got {sorted(attrs)}")
        self.graph.graph.update(attrs)

    def visited_nodes(self) -> list[int]:
        """Visited node ids in visit order."""
        visited = [(a["visit_order"], n) for n, a in self.graph.nodes(data=True) if a["visit_order"] > 0]
        return [n for _, n in sorted(visited)]

    # ---- serialisation ----------------------------------------------------------------------

    def to_json_dict(self) -> dict:
        """``{"graph": {...}, "nodes": [{"id": int, **attrs}, ...], "heatmaps": {"id": [[...]]},
        "config": {...}}``; nodes sorted by id."""
        return {
            "graph": dict(self.graph.graph),
            "nodes": [{"id": int(n), **a} for n, a in sorted(self.graph.nodes(data=True))],
            "heatmaps": {str(k): np.round(v.astype(np.float64), HEATMAP_DECIMALS).tolist()
                         for k, v in sorted(self.heatmaps.items())},
            "config": dict(self.config),
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> "SearchTrace":
        """Inverse of :meth:`to_json_dict` (heatmaps come back as float32, rounded)."""
        g = nx.DiGraph()
        g.graph.update(d.get("graph", {}))
        for node in d["nodes"]:
            attrs = dict(node)
            g.add_node(int(attrs.pop("id")), **attrs)
        for nid, attrs in list(g.nodes(data=True)):
            if attrs["parent"] >= 0:
                g.add_edge(attrs["parent"], nid)
        heatmaps = {int(k): np.asarray(v, dtype=np.float32) for k, v in d.get("heatmaps", {}).items()}
        return cls(g, heatmaps, dict(d.get("config", {})))

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json_dict()) + "\n", encoding="utf-8")

    @classmethod
    def read_json(cls, path: str | Path) -> "SearchTrace":
        return cls.from_json_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def write_graphml(self, path: str | Path) -> None:
        """GraphML holds scalars only: list attributes are written as JSON strings (``"[0.0, ...]"``).
        Heatmaps and the config are not written (they are in the JSON form)."""
        g = nx.DiGraph()
        g.graph.update({k: _scalar(v) for k, v in self.graph.graph.items()})
        for n, a in self.graph.nodes(data=True):
            g.add_node(n, **{k: _scalar(v) for k, v in a.items()})
        g.add_edges_from(self.graph.edges())
        nx.write_graphml(g, str(path))


def _scalar(v: Any) -> Any:
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    if v is None:
        return ""
    if isinstance(v, np.generic):
        return v.item()
    return v
