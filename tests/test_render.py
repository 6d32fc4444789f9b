from types import SimpleNamespace

import networkx as nx
import numpy as np
from PIL import Image

from seal.core.image_source import ImageSource
from search.render import render_all, render_final_crop, render_heatmaps, render_overview, visited_in_order

W, H = 3200, 2000
FOUND = [2410.0, 1510.0, 2450.0, 1550.0]


def _image():
    img = Image.new("RGB", (W, H), (90, 90, 90))
    img.paste((250, 250, 250), (2410, 1510, 2450, 1550))
    return ImageSource(img)


def _trace(found=True):
    """A hand-made trace with the attributes api.md pins (root, 4 children, one grandchild)."""
    g = nx.DiGraph()

    def add(node, box, level, parent, order, best=None):
        g.add_node(node, box_xyxy=list(box), level=level, parent=parent, priority=1.0 / (node + 1),
                   visit_order=order, best_score=0.9 if best else 0.0, best_box_xyxy=list(best or []),
                   cue="target", heatmap_max=5.0, model_calls=1, seconds=0.01, leaf=level == 2)
        if parent >= 0:
            g.add_edge(parent, node)

    add(0, (0, 0, W, H), 0, -1, 1)
    add(1, (0, 0, 1600, 1000), 1, 0, 0)
    add(2, (1600, 0, 3200, 1000), 1, 0, 0)
    add(3, (0, 1000, 1600, 2000), 1, 0, 0)
    add(4, (1600, 1000, 3200, 2000), 1, 0, 2)
    add(5, (2400, 1500, 3200, 2000), 2, 4, 3, best=FOUND if found else None)
    g.graph.update(target="white square", strategy="vstar", found=found, box_xyxy=FOUND if found else [],
                   score=0.9, nodes_visited=3, model_calls=3, seconds=0.03, stop_reason="confident",
                   image_width=W, image_height=H)
    heat = np.full((32, 32), -4.0, dtype=np.float32)
    heat[24:28, 20:24] = 8.0  # high at the bottom right
    return SimpleNamespace(graph=g, heatmaps={0: heat, 4: heat, 3: heat})  # node 3 never visited


def _png(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def test_visit_order():
    assert visited_in_order(_trace()) == [0, 4, 5]


def test_overview_draws_visited_boxes_and_found(tmp_path):
    [path] = render_overview(_image(), _trace(), tmp_path / "o.png", max_side=1600)
    px = _png(path)
    assert px.shape == (1000, 1600, 3)  # downscaled by 2
    # node 4's top edge (y = 1000 full -> 500) is drawn in the level-1 colour; node 1's edge is not (unvisited)
    assert tuple(px[500, 1200]) != (90, 90, 90)
    assert tuple(px[250, 800]) == (90, 90, 90)
    # the found box (1205..1225, 755..775 after downscaling) is outlined in green
    assert any(tuple(px[755 + d, 1215]) == (0, 255, 0) for d in range(-3, 4))
    assert tuple(px[100, 100]) == (90, 90, 90)  # background elsewhere untouched


def test_overview_without_found_box(tmp_path):
    px = _png(render_overview(_image(), _trace(found=False), tmp_path / "o.png")[0])
    assert not (px == (0, 255, 0)).all(axis=2).any()


def test_heatmaps_one_per_visited_node_with_heatmap(tmp_path):
    paths = render_heatmaps(_image(), _trace(), tmp_path / "hm", max_side=512)
    assert [p.name for p in paths] == ["step_001_node0.png", "step_002_node4.png"]
    root = _png(paths[0])
    assert root.shape == (320, 512, 3)  # 3200 x 2000 patch -> 512 x 320, aspect kept
    # jet over a high logit is red-ish where the heatmap is high, blue-ish where it is low
    hot, cold = root[int(26 / 32 * 320), int(22 / 32 * 512)], root[20, 20]
    assert hot[0] > hot[2] + 60 and cold[2] > cold[0] + 60
    node4 = _png(paths[1])
    assert node4.shape == (320, 512, 3)


def test_final_crop_contains_found_box(tmp_path):
    [path] = render_final_crop(_image(), _trace(), tmp_path / "c.png", context=1.0, max_side=512)
    px = _png(path)
    assert px.shape == (512, 512, 3)  # 40 px box + 40 px context each side = 120 px, upscaled to 512
    centre = px[256, 256]
    assert centre.min() > 200  # the white square
    assert (px == (0, 255, 0)).all(axis=2).any()
    assert render_final_crop(_image(), _trace(found=False), tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_render_all_writes_every_file(tmp_path):
    paths = render_all(_image(), _trace(), tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in paths)
    assert names == ["final_crop.png", "heatmaps/step_001_node0.png", "heatmaps/step_002_node4.png",
                     "search_overview.png"]
    assert all(p.stat().st_size > 0 for p in paths)
