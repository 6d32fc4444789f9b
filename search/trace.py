"""``SearchTrace``: the search tree as a networkx ``DiGraph`` plus the heatmaps that guided it.

Node ids are ints in creation order (0 = root); edges go parent -> child. Node attributes:
``box_xyxy`` (4 floats, full-image px), ``level``, ``parent`` (-1 for the root), ``priority``,
``visit_order`` (1-based, 0 = never visited), ``best_score``, ``best_box_xyxy`` (4 floats or []),
``cue`` ("target" | "context" | "none"), ``heatmap_max``, ``model_calls``, ``seconds``, ``leaf``.
Graph attributes: ``target``, ``strategy``, ``found``, ``box_xyxy``, ``score``, ``nodes_visited``,
``model_calls``, ``seconds``, ``stop_reason``, ``image_width``, ``image_height``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np


class SearchTrace:
    def __init__(self, graph: nx.DiGraph | None = None, heatmaps: dict[int, np.ndarray] | None = None) -> None:
        self.graph = graph if graph is not None else nx.DiGraph()
        self.heatmaps: dict[int, np.ndarray] = heatmaps if heatmaps is not None else {}

    def add_node(self, node_id: int, box_xyxy, level: int, parent: int, priority: float, leaf: bool) -> None:
        self.graph.add_node(node_id, box_xyxy=[float(v) for v in box_xyxy], level=level, parent=parent,
                            priority=float(priority), visit_order=0, best_score=0.0, best_box_xyxy=[],
                            cue="none", heatmap_max=0.0, model_calls=0, seconds=0.0, leaf=bool(leaf))
        if parent >= 0:
            self.graph.add_edge(parent, node_id)

    def update(self, node_id: int, **attrs: Any) -> None:
        self.graph.nodes[node_id].update(attrs)

    def visited_nodes(self) -> list[int]:
        """Visited node ids in visit order."""
        visited = [(a["visit_order"], n) for n, a in self.graph.nodes(data=True) if a["visit_order"] > 0]
        return [n for _, n in sorted(visited)]

    def to_json_dict(self) -> dict:
        return {
            "graph": dict(self.graph.graph),
            "nodes": [{"id": n, **a} for n, a in sorted(self.graph.nodes(data=True))],
            "heatmaps": {str(k): np.round(v.astype(np.float64), 3).tolist() for k, v in sorted(self.heatmaps.items())},
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> "SearchTrace":
        g = nx.DiGraph()
        g.graph.update(d.get("graph", {}))
        for node in d["nodes"]:
            attrs = dict(node)
            nid = attrs.pop("id")
            g.add_node(nid, **attrs)
        for nid, attrs in g.nodes(data=True):
            if attrs.get("parent", -1) >= 0:
                g.add_edge(attrs["parent"], nid)
        heatmaps = {int(k): np.asarray(v, dtype=np.float32) for k, v in d.get("heatmaps", {}).items()}
        return cls(g, heatmaps)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json_dict()) + "\n", encoding="utf-8")

    def write_graphml(self, path: str | Path) -> None:
        """GraphML holds scalars only: list attributes are written as JSON strings."""
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
