"""``seal ask`` through the real CLI: a tiny VQA model that learned the refusal, the oracle localizer,
single questions (terminal trace, JSON line, trace directory), the interactive session and bad input."""

import io
import json
import sys

import pytest

from seal.cli.main import main
from seal.models.backbone import TinyBackboneConfig, save_llava
from tests.test_agent_fixtures import (BACKBONE, FOUND_ANSWER, OPTIONS, OTHER_QUESTION, QUESTION, TARGETS, VWM,
                                       trained_vqa, write_scene)


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    vqa = trained_vqa()
    return save_llava(vqa.model, vqa.processor, tmp_path_factory.mktemp("vqa"), TinyBackboneConfig(**BACKBONE))


@pytest.fixture()
def scene(tmp_path):
    return write_scene(tmp_path)


def _ask(vqa_dir, image, *extra):
    return main(["ask", "--image", str(image), f"--models.vqa_path={vqa_dir}", "--localizer", "oracle",
                 "--search.max_nodes=12", f"--vwm.crop_side_px={VWM['crop_side_px']}",
                 f"--vwm.view_side_px={VWM['view_side_px']}", *extra])


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_ask_full_search_trace_and_json(vqa_dir, scene, tmp_path, capsys):
    image, ann = scene
    trace = tmp_path / "trace"
    code = _ask(vqa_dir, image, "--annotation", str(ann), "--question", QUESTION, "--options", *OPTIONS,
                "--policy", "always_full", "--trace-dir", str(trace), "--json")
    out = capsys.readouterr().out
    assert code == 0
    rec = _last_json(out)
    assert rec["action"] == "full"
    assert rec["targets"] == TARGETS
    by_name = {s["target"]: s for s in rec["search"]}
    star = by_name["striped star"]
    assert star["found"] and star["nodes_visited"] >= 1
    x1, y1, x2, y2 = star["box_xyxy"]
    assert 290 <= x1 <= 310 and 190 <= y1 <= 210 and 310 <= x2 <= 330  # the star is at (300, 200, 20, 20)
    assert rec["answer"] == FOUND_ANSWER
    cost = rec["cost"]
    assert cost["vision_tokens"] == (cost["vision_tokens_global"] + cost["vision_tokens_crops"]
                                     + cost["vision_tokens_search"])
    assert cost["vision_tokens_crops"] > 0 and cost["search_calls"] >= 2
    # the terminal trace shows the steps as they happen
    assert "FULL_VISION" in out and "missing" in out and "striped star #1" in out and "memory" in out
    # the trace directory
    assert (trace / "index.html").is_file() and (trace / "config.yaml").is_file()
    saved = json.loads((trace / "trace.json").read_text())
    assert saved["answer"] == FOUND_ANSWER and any(e["type"] == "search_step" for e in saved["events"])
    star_dir = trace / "01_striped_star"
    assert (star_dir / "search_graph.graphml").is_file() and (star_dir / "search_overview.png").is_file()
    assert (trace / "vwm_crop_0.png").is_file() and (trace / "global_view_full.png").is_file()
    html = (trace / "index.html").read_text()
    assert FOUND_ANSWER in html and "data:image/png;base64" in html


def test_ask_no_vision_policy_spends_nothing(vqa_dir, scene, capsys):
    image, ann = scene
    code = _ask(vqa_dir, image, "--annotation", str(ann), "--question", QUESTION, "--options", *OPTIONS,
                "--policy", "no_vision", "--json")
    rec = _last_json(capsys.readouterr().out)
    assert code == 0
    assert rec["action"] == "no" and rec["search"] == [] and rec["cost"]["vision_tokens"] == 0
    assert rec["answer"] in OPTIONS


def test_interactive_session_reuses_cached_encodings(vqa_dir, scene, tmp_path, capsys, monkeypatch):
    image, ann = scene
    lines = f"{QUESTION} | {OPTIONS[0]} | {OPTIONS[1]}\n{QUESTION} | {OPTIONS[0]} | {OPTIONS[1]}\n{OTHER_QUESTION}\n\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    trace = tmp_path / "session"
    code = _ask(vqa_dir, image, "--annotation", str(ann), "--policy", "always_full", "--json", "--quiet",
                "--trace-dir", str(trace))
    out = capsys.readouterr().out
    assert code == 0
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(records) == 3
    first, second = records[0]["cost"], records[1]["cost"]
    assert first["vision_tokens_search"] > 0
    assert second["vision_tokens_search"] == 0  # the same targets' patches come from the session cache
    assert records[2]["options"] is None  # a free-form question
    assert "session    3 question(s)" in out
    assert all((trace / f"q0{k}" / "index.html").is_file() for k in (1, 2, 3))


def test_bad_inputs_exit_2_with_one_line(vqa_dir, scene, tmp_path, capsys):
    image, _ = scene
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert _ask(vqa_dir, bad, "--question", QUESTION) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0]
    assert _ask(vqa_dir, image, "--question", QUESTION, "--policy", "nonsense") == 2
    assert "--policy" in capsys.readouterr().err
    assert _ask(vqa_dir, image, "--question", QUESTION, "--localizer", "oracle", "--policy", "always_full") == 2
    assert "annotation" in capsys.readouterr().err


def test_the_shipped_models_answer_and_search_in_bf16(tmp_path, capsys):
    """--dtype bf16 loads the shipped VQA LLM and search model in bfloat16 (their heads stay float32) and a
    FULL question searches and answers."""
    from tests.test_agent_fixtures import write_scene

    image, _ = write_scene(tmp_path)
    argv = ["ask", "--image", str(image), "--question", QUESTION, "--options", *OPTIONS, "--policy", "always_full",
            "--dtype", "bf16", "--search.max_nodes=4", "--quiet", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    record = _last_json(capsys.readouterr().out)
    assert record["action"] == "full" and record["answer"] in OPTIONS and record["cost"]["search_nodes"] >= 1
