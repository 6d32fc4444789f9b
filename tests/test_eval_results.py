"""Metrics and the resumable result files of ``seal eval`` (no models)."""

import csv
import json

import numpy as np
import pytest

from eval.metrics import bootstrap_ci, category_column, run_metrics
from eval.results import PredictionLog, write_results_row, write_summary
from seal.core.errors import InputError


def _rec(qid, correct, category="direct_attributes", action="full", tokens=100, seconds=0.5, fallback=False):
    return {"question_id": qid, "correct": correct, "category": category, "action": action,
            "vision_tokens": tokens, "seconds": seconds, "peak_rss_mb": 10.0 + tokens, "fallback_fired": fallback}


def test_run_metrics_values():
    recs = [_rec("a", True, action="no", tokens=0, seconds=1.0), _rec("b", False, action="full", tokens=300),
            _rec("c", True, "relative_position", action="coarse", tokens=60, fallback=True),
            _rec("d", True, action="full", tokens=300, seconds=2.0)]
    m = run_metrics(recs)
    assert m["n"] == 4 and m["accuracy"] == 0.75
    assert (m["action_rate_no"], m["action_rate_coarse"], m["action_rate_full"]) == (0.25, 0.25, 0.5)
    assert m["avg_cost"] == 165.0 and m["latency"] == 1.0 and m["latency_p50"] == 0.75
    assert m["mem"] == 310.0 and m["fallback_rate"] == 0.25
    assert m["acc_direct_attributes"] == pytest.approx(2 / 3) and m["acc_relative_position"] == 1.0
    assert m["accuracy_ci_low"] <= 0.75 <= m["accuracy_ci_high"]
    assert category_column("GPT4V-hard") == "acc_gpt4v_hard"


def test_bootstrap_ci_narrows_with_n_and_is_seeded():
    small = bootstrap_ci([True, False] * 5, seed=1)
    large = bootstrap_ci([True, False] * 500, seed=1)
    assert small == bootstrap_ci([True, False] * 5, seed=1)
    assert small[0] < large[0] < 0.5 < large[1] < small[1]
    assert bootstrap_ci([True] * 7) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_prediction_log_resume_drops_a_torn_last_line(tmp_path):
    log = PredictionLog(tmp_path, "run1")
    log.append(_rec("a", True))
    PredictionLog(tmp_path, "run2").append(_rec("a", False))
    with (tmp_path / "predictions.jsonl").open("a") as f:
        f.write('{"run_id": "run1", "question_id": "b", "corr')
    again = PredictionLog(tmp_path, "run1")
    assert again.done() == {"a"} and len(again.records()) == 1
    again.append(_rec("b", True))
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert PredictionLog(tmp_path, "run1").done() == {"a", "b"}


def test_malformed_middle_line_is_an_input_error(tmp_path):
    (tmp_path / "predictions.jsonl").write_text('garbage\n{"question_id": "a", "run_id": "r"}\n')
    with pytest.raises(InputError, match="line 1"):
        PredictionLog(tmp_path, "r")


def test_results_rows_replace_by_run_and_union_columns(tmp_path):
    write_results_row(tmp_path, {"run_id": "r1", "baseline_name": "always_full", "accuracy": 0.5, "acc_x": 1.0})
    write_results_row(tmp_path, {"run_id": "r2", "baseline_name": "no_vision", "accuracy": 0.25, "acc_y": 0.0})
    write_results_row(tmp_path, {"run_id": "r1", "baseline_name": "always_full", "accuracy": 0.75, "acc_x": 1.0})
    with (tmp_path / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    assert header[:3] == ["run_id", "baseline_name", "accuracy"] and set(header[3:]) == {"acc_x", "acc_y"}
    assert [(r["run_id"], r["accuracy"], r["acc_y"]) for r in rows] == [("r2", "0.25", "0.0"), ("r1", "0.75", "")]
    write_summary(tmp_path, "r1", {"accuracy": 0.5})
    write_summary(tmp_path, "r2", {"accuracy": 0.25})
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["latest"] == "r2" and set(data["runs"]) == {"r1", "r2"}
    assert np.isclose(data["runs"]["r1"]["accuracy"], 0.5)


def test_results_row_lambda_is_the_learned_heads_own(tmp_path):
    from eval.runner import EvalRun
    from seal.core.manifest import write_manifest

    head = tmp_path / "head"
    head.mkdir()
    for name in ("head.json", "head.safetensors"):
        (head / name).write_bytes(b"{}")
    write_manifest(head, "policy_head", {}, ["head.json", "head.safetensors"],
                   recipe={"trained_with": {"lambda_cost": 0.3}})
    learned = EvalRun("synth", tmp_path, "likelihood", {"policy": {"lambda_cost": 0.05, "checkpoint": str(head),
                                                                    "baseline_name": None}})
    assert learned.lambda_cost == 0.3  # what the loaded head was trained with, not the run's default
    baseline = EvalRun("synth", tmp_path, "likelihood", {"policy": {"lambda_cost": 0.05, "checkpoint": str(head),
                                                                     "baseline_name": "always_full"}})
    assert baseline.lambda_cost == 0.05
    missing = EvalRun("synth", tmp_path, "likelihood", {"policy": {"lambda_cost": 0.05,
                                                                    "checkpoint": str(tmp_path / "none")}})
    assert missing.lambda_cost == 0.05


def test_last_run_keeps_only_the_newest_run_id():
    from eval.results import last_run

    records = [{"run_id": "a", "question_id": 1}, {"run_id": "b", "question_id": 1}, {"run_id": "b", "question_id": 2}]
    assert last_run(records) == records[1:] and last_run([]) == []
