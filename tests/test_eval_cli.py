"""``seal eval`` through the real CLI on a tiny generated SynthVStar folder with a tiny random VQA model
and the oracle localizer: files, columns, resume, baseline action rates, input errors."""

import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from eval.readers.vstar import read_vstar
from eval.synth.config import SynthConfig
from eval.synth.generate import generate_benchmark
from seal.cli.main import main
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava
from seal.models.tokenizer import train_tokenizer

BACKBONE = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=1024,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(SynthConfig(n=3, seed=1, split="test", suite="mixed", long_side=480), out)
    return out


@pytest.fixture(scope="module")
def vqa_dir(bench, tmp_path_factory):
    samples = read_vstar(bench)
    corpus = [t for s in samples for t in (s.question, *s.options, *s.targets)] * 4
    tokenizer = train_tokenizer(corpus, vocab_size=500)
    cfg = TinyBackboneConfig(**BACKBONE)
    model, processor = build_tiny_llava(cfg, tokenizer)
    return save_llava(model, processor, tmp_path_factory.mktemp("vqa_tiny"), cfg)


def _eval(bench, vqa_dir, out, *extra):
    return main(["eval", "--dataset", "synth", "--path", str(bench), "--output-dir", str(out), "--no-progress",
                 f"--models.vqa_path={vqa_dir}", "--models.localizer=oracle", "--agent.max_new_tokens=4",
                 *extra])


def _rows(out):
    with (out / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _predictions(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]


def test_eval_writes_results_summary_and_predictions(bench, vqa_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_full") == 0
    preds = _predictions(out)
    assert len(preds) == 3 and {p["action"] for p in preds} == {"full"}
    assert all(p["vision_tokens"] > 0 for p in preds)
    (row,) = _rows(out)
    for col in ("baseline_name", "dataset", "lambda_cost", "action_rate_no", "action_rate_coarse",
                "action_rate_full", "accuracy", "avg_cost", "latency", "latency_p50", "mem", "fallback_rate", "n"):
        assert row[col] != "", col
    assert row["baseline_name"] == "always_full" and row["dataset"] == "synth" and row["n"] == "3"
    assert float(row["action_rate_full"]) == 1.0 and float(row["action_rate_no"]) == 0.0
    accuracy = sum(p["correct"] for p in preds) / 3
    assert float(row["accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    assert float(row["avg_cost"]) == pytest.approx(sum(p["vision_tokens"] for p in preds) / 3, abs=1e-3)
    categories = {p["category"] for p in preds}
    assert len(categories) >= 2 and all(f"acc_{c}" in row for c in categories)
    summary = json.loads((out / "summary.json").read_text())
    run = summary["runs"][summary["latest"]]
    lo, hi = run["accuracy_ci95"]
    assert 0.0 <= lo <= accuracy <= hi <= 1.0
    assert run["config"]["policy"]["baseline_name"] == "always_full" and run["git_revision"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 3


def test_resume_skips_answered_questions_and_baselines_share_the_table(bench, vqa_dir, tmp_path):
    out = tmp_path / "out"
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=no_vision", "--limit", "2") == 0
    first = _predictions(out)
    assert len(first) == 2
    with (out / "predictions.jsonl").open("a") as f:
        f.write('{"run_id": "torn')  # a run killed mid-write
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=no_vision") == 0
    preds = _predictions(out)
    assert len(preds) == 3 and preds[:2] == first  # only the third question was asked
    assert len({p["question_id"] for p in preds}) == 3
    (row,) = _rows(out)  # same run: the row was replaced, not duplicated
    assert row["n"] == "3" and float(row["action_rate_no"]) == 1.0 and float(row["avg_cost"]) == 0.0

    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_coarse", "--limit", "1") == 0
    rows = {r["baseline_name"]: r for r in _rows(out)}
    assert set(rows) == {"no_vision", "always_coarse"}
    assert float(rows["always_coarse"]["action_rate_coarse"]) == 1.0 and rows["always_coarse"]["n"] == "1"
    assert float(rows["always_coarse"]["avg_cost"]) > 0


def test_bad_inputs_exit_2_with_one_line(bench, vqa_dir, tmp_path, capsys):
    assert _eval(tmp_path / "missing", vqa_dir, tmp_path / "o1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]

    broken = tmp_path / "broken"
    (broken / "direct_attributes").mkdir(parents=True)
    (broken / "direct_attributes" / "a.jpg").write_bytes(b"\xff\xd8")
    (broken / "direct_attributes" / "a.json").write_text("{not json")
    assert _eval(broken, vqa_dir, tmp_path / "o2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.json" in err[0]

    assert _eval(bench, vqa_dir, tmp_path / "o3", "--protocol", "letter", "--limit", "0") == 2
    assert "--limit" in capsys.readouterr().err
