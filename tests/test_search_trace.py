"""Search traces (search/trace.py): the pinned attributes, JSON round trip, GraphML export."""

import json

import networkx as nx
import numpy as np
import pytest

from search.config import SearchConfig
from search.engine import run_search
from search.trace import GRAPH_ATTRS, NODE_ATTRS, SearchTrace
from tests.fakes import FakeLocalizer, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)

API_NODE_ATTRS = {"box_xyxy", "level", "parent", "priority", "visit_order", "best_score", "best_box_xyxy", "cue",
                  "zoom_score", "hit_check_score", "heatmap_max", "model_calls", "seconds", "leaf"}
API_GRAPH_ATTRS = {"target", "strategy", "found", "box_xyxy", "score", "nodes_visited", "model_calls", "seconds",
                   "stop_reason", "image_width", "image_height", "hit_check_calls", "hit_check_score"}


@pytest.fixture(scope="module")
def result():
    context = np.full((8, 8), -6.0, dtype=np.float32)
    context[0:4, 4:8] = 6.0
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, informative=False, context=context, grid=(6, 10))
    return run_search(loc, blank_image(2048, 1600), "cup", SearchConfig(max_nodes=50))


def test_exactly_the_pinned_attributes(result):
    g = result.trace.graph
    assert set(NODE_ATTRS) == API_NODE_ATTRS and set(GRAPH_ATTRS) == API_GRAPH_ATTRS
    for _, attrs in g.nodes(data=True):
        assert set(attrs) == API_NODE_ATTRS
    assert set(g.graph) == API_GRAPH_ATTRS
    assert sorted(g.nodes) == list(range(g.number_of_nodes()))  # ids in creation order, root 0
    assert g.nodes[0]["parent"] == -1 and all(g.nodes[v]["parent"] == u for u, v in g.edges)
    json.dumps({"graph": g.graph, "nodes": [a for _, a in g.nodes(data=True)]})  # all JSON-able
    assert g.graph["found"] is True and g.graph["box_xyxy"] == list(CUP) and g.graph["image_width"] == 2048
    assert g.graph["nodes_visited"] == result.nodes_visited and g.graph["stop_reason"] == "confident"


def test_attribute_values(result):
    g, t = result.trace.graph, result.trace
    visited = t.visited_nodes()
    assert [g.nodes[n]["visit_order"] for n in visited] == list(range(1, len(visited) + 1))
    assert set(t.heatmaps) == set(visited)  # one heatmap per visited node
    assert g.nodes[0]["cue"] == "context" and np.array_equal(t.heatmaps[0][0, 4:], np.full(4, 6.0))
    assert t.heatmaps[visited[-1]].shape == (6, 10)  # the found leaf keeps its target heatmap
    assert g.nodes[visited[-1]]["cue"] == "none" and g.nodes[visited[-1]]["best_box_xyxy"] == list(CUP)
    unvisited = [n for n in g if n not in visited]
    assert unvisited and all(g.nodes[n]["cue"] == "none" and g.nodes[n]["best_box_xyxy"] == [] for n in unvisited)
    assert all(g.nodes[n]["model_calls"] == 0 for n in unvisited)


def test_json_round_trip(result, tmp_path):
    path = tmp_path / "trace.json"
    result.trace.write_json(path)
    back = SearchTrace.read_json(path)
    a, b = result.trace.graph, back.graph
    assert b.graph == a.graph
    assert sorted(b.edges) == sorted(a.edges)
    for n in a:
        assert b.nodes[n] == a.nodes[n]
    assert back.visited_nodes() == result.trace.visited_nodes()
    assert set(back.heatmaps) == set(result.trace.heatmaps)
    for k, heat in result.trace.heatmaps.items():
        assert back.heatmaps[k].dtype == np.float32 and back.heatmaps[k].shape == heat.shape
        assert np.allclose(back.heatmaps[k], heat, atol=1e-3)
    assert back.config["max_nodes"] == 50 and back.config["strategy"] == "vstar"
    assert SearchTrace.from_json_dict(json.loads(path.read_text())).to_json_dict() == back.to_json_dict()


def test_graphml_is_written_and_readable(result, tmp_path):
    path = tmp_path / "search_graph.graphml"
    result.trace.write_graphml(path)
    g = nx.read_graphml(path, node_type=int)
    assert sorted(g.nodes) == sorted(result.trace.graph.nodes) and sorted(g.edges) == sorted(result.trace.graph.edges)
    root = g.nodes[0]
    assert json.loads(root["box_xyxy"]) == [0.0, 0.0, 2048.0, 1600.0]
    assert root["visit_order"] == 1 and root["cue"] == "context" and root["leaf"] is False
    assert json.loads(g.graph["box_xyxy"]) == list(CUP) and g.graph["found"] is True
    leaf = next(n for n, a in g.nodes(data=True) if a["visit_order"] == result.nodes_visited)
    assert json.loads(g.nodes[leaf]["best_box_xyxy"]) == list(CUP)


def test_update_rejects_unknown_attributes():
    t = SearchTrace()
    t.add_node(0, (0, 0, 1, 1), 0, -1, 0.0, True)
    with pytest.raises(KeyError, match="bogus"):
        t.update(0, bogus=1)
    with pytest.raises(KeyError):
        t.set_summary(target="x")
