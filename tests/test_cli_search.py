import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from seal.core.geometry import iou_xyxy, xywh_to_xyxy
from tests.cli_helpers import last_json, run_cli

ROOT = Path(__file__).resolve().parents[1]

# Two small targets on a 2400 x 1800 image: 60 px is illegible at the root (5.6 input px), legible in
# patches of <= 960 px long side (input 224, min_legible_px 14).
SCENE = [("red disc", [1900, 1500, 60, 60], (220, 30, 30)), ("blue square", [300, 200, 60, 60], (30, 60, 220))]


def make_scene(folder: Path, stem="sa_1", size=(2400, 1800), objects=SCENE, category="direct_attributes",
               suffix=".jpg", image: Image.Image | None = None) -> tuple[Path, Path]:
    """Draw ``objects`` (name, [x, y, w, h], colour) on a textured background; write image + V*Bench JSON."""
    d = folder / category
    d.mkdir(parents=True, exist_ok=True)
    if image is None:
        rng = np.random.default_rng(len(stem))
        w, h = size
        small = rng.integers(90, 150, (max(1, h // 40), max(1, w // 40), 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(image)
        for name, (x, y, bw, bh), colour in objects:
            (draw.ellipse if "disc" in name else draw.rectangle)([x, y, x + bw - 1, y + bh - 1], fill=colour)
    img_path, ann_path = d / f"{stem}{suffix}", d / f"{stem}.json"
    image.save(img_path)
    ann_path.write_text(json.dumps({"target_object": [o[0] for o in objects], "bbox": [o[1] for o in objects],
                                    "question": "What is the colour of the disc?", "options": ["red", "blue"]}))
    return img_path, ann_path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("bench"))


def test_json_line_and_found_box(scene, capsys):
    img, ann = scene
    rc, out, err = run_cli(["search", "--localizer", "oracle", "--image", img, "--annotation", ann, "--target",
                            "red disc", "--json"], capsys)
    assert rc == 0, err
    res = last_json(out)
    for key in ("target", "found", "box_xyxy", "score", "nodes_visited", "model_calls", "seconds", "stop_reason",
                "localizer_seconds", "nodes_scored", "image_width", "gt_iou"):
        assert key in res
    assert res["target"] == "red disc" and res["found"] is True and res["score"] > 0.5
    assert iou_xyxy(res["box_xyxy"], xywh_to_xyxy(SCENE[0][1])) >= 0.5
    assert res["gt_iou"] >= 0.5
    assert res["nodes_visited"] >= 2  # illegible at the root: the search had to zoom
    assert res["model_calls"] >= res["nodes_visited"] // 4 and res["seconds"] > 0
    step_lines = [ln for ln in out.splitlines() if ln.strip().startswith("#")]
    assert len(step_lines) == res["nodes_visited"]  # one printed line per visited node
    assert step_lines[0].split()[0:2] == ["#1", "L0"]


def test_all_annotation_targets_share_the_image(scene, capsys):
    img, ann = scene
    rc, out, _ = run_cli(["search", "--localizer", "oracle", "--image", img, "--annotation", ann, "--json", "--quiet"],
                         capsys)
    assert rc == 0
    res = last_json(out)
    assert res["target"] == ["red disc", "blue square"] and len(res["results"]) == 2
    for r, (_, box, _) in zip(res["results"], SCENE):
        assert r["found"] and iou_xyxy(r["box_xyxy"], xywh_to_xyxy(box)) >= 0.5
    assert res["found"] is True
    assert res["nodes_visited"] == sum(r["nodes_visited"] for r in res["results"])
    assert res["localizer_stats"]["encode_cache_hits"] >= 1  # the second target reused the root encoding


def test_trace_dir_contents(scene, tmp_path, capsys):
    img, ann = scene
    out_dir = tmp_path / "trace"
    rc, out, _ = run_cli(["search", "--localizer", "oracle", "--image", img, "--annotation", ann, "--target",
                          "red disc", "--json", "--trace-dir", out_dir, "--search.max_nodes=40"], capsys)
    assert rc == 0
    res = last_json(out)
    for name in ("trace.json", "search_graph.graphml", "config.yaml", "run.json", "search_overview.png",
                 "final_crop.png"):
        assert (out_dir / name).is_file(), name
    steps = sorted((out_dir / "heatmaps").glob("step_*.png"))
    assert 1 <= len(steps) <= res["nodes_visited"]
    assert "max_nodes: 40" in (out_dir / "config.yaml").read_text()
    g = nx.read_graphml(out_dir / "search_graph.graphml")
    visited = [n for n, a in g.nodes(data=True) if int(a["visit_order"]) > 0]
    assert len(visited) == res["nodes_visited"]
    trace = json.loads((out_dir / "trace.json").read_text())
    assert trace  # a non-empty JSON document
    with Image.open(out_dir / "search_overview.png") as im:
        assert max(im.size) <= 1600 and im.format == "PNG"


def test_strategy_changes_node_counts(scene, capsys):
    img, ann = scene
    counts = {}
    for strategy in ("vstar", "bfs"):
        rc, out, _ = run_cli(["search", "--localizer", "oracle", "--image", img, "--annotation", ann, "--target",
                              "red disc", "--json", "--quiet", "--strategy", strategy], capsys)
        assert rc == 0
        res = last_json(out)
        assert res["strategy"] == strategy
        counts[strategy] = res["nodes_visited"]
    assert counts["bfs"] > counts["vstar"]  # blind breadth-first sweeps the top-left quadrants first


def test_oracle_needs_annotation_and_targets(scene, capsys):
    img, _ = scene
    rc, _, err = run_cli(["search", "--localizer", "oracle", "--image", img, "--target", "red disc"], capsys)
    assert rc == 2 and "--annotation" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["search", "--localizer", "oracle", "--image", img, "--annotation",
                          img.with_suffix(".missing.json")], capsys)
    assert rc == 2 and "missing.json" in err


def test_subprocess_run(scene):
    img, ann = scene
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "seal", "search", "--localizer", "oracle", "--image", str(img),
                           "--annotation", str(ann), "--target", "blue square", "--json"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = last_json(proc.stdout)
    assert res["found"] and iou_xyxy(res["box_xyxy"], xywh_to_xyxy(SCENE[1][1])) >= 0.5


def test_a_missing_hit_check_model_is_an_error_not_a_fallback(tmp_path):
    """A VQA checker named on the command line that does not exist is a one-line error naming the
    field, not a silent fallback to the answering model."""
    from seal.cli.main import main

    code = main(["search", "--image", str(ROOT / "checkpoints" / "vsm_tiny" / "decoders.safetensors"),
                 "--target", "red star", "--hit-check-model", str(tmp_path / "no_checker")])
    assert code == 2


def test_the_shipped_search_model_checks_with_its_crop_matcher_unless_a_vqa_checker_is_named():
    """The shipped VSM carries its crop matcher: by default it alone checks (no VQA model is even
    loaded); ``hit_check.vqa=always`` with a named model adds that VQA LLM behind it, asked as its
    manifest records; ``--hit_check.crop_matcher=false`` leaves the answering VQA LLM alone."""
    from search.hit_check.crop_matcher import CropMatcherCheck
    from search.hit_check.protocol import AllChecks
    from search.hit_check.words import VQAWordCheck
    from search.vsm.localizer import load_vsm_localizer
    from seal.cli.cmd_search import load_hit_check
    from seal.config import SearchCommandConfig, load

    vsm = load_vsm_localizer(ROOT / "checkpoints" / "vsm_tiny")
    assert vsm.crop_matcher is not None
    assert isinstance(load_hit_check(load(cls=SearchCommandConfig), vsm), CropMatcherCheck)
    checker = ROOT / "checkpoints" / "vqa_check_tiny"
    named = load_hit_check(load([], [f"hit_check.vqa_path={checker}", "hit_check.vqa=always"], cls=SearchCommandConfig),
                           vsm)
    assert isinstance(named, AllChecks) and [type(c) for c in named.checks] == [CropMatcherCheck, VQAWordCheck]
    assert named.checks[1].cfg.checks("dotted cross") == [("pattern", "dotted", "cross"),
                                                          ("shape", "cross", "dotted object")]
    vqa_only = load_hit_check(load([], ["hit_check.crop_matcher=false"], cls=SearchCommandConfig), vsm)
    assert isinstance(vqa_only, VQAWordCheck) and vqa_only.cfg.checked_kinds == ["color", "pattern"]
