"""``seal eval --dataset mmbench|hrbench`` through the real CLI with a tiny random VQA model and the
``no_vision`` baseline (no search, no annotations): every TSV row answered, our files and VLMEvalKit's
files with their columns, CircularEval / per-cycle figures consistent with the predictions, and a TEST
split written as a submission only."""

import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from seal.cli.main import main
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava
from seal.models.tokenizer import train_tokenizer
from tests.fixtures_bench import MMBENCH_COLUMNS, mmbench_rows, write_hrbench_tsv, write_mmbench_tsv

BACKBONE = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=1024,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)
COLUMNS = ["split", "image", "answer", "question", "index", "D", "C", "B", "A", "hint", "category", "l2-category",
           "source", "comment"]  # reordered on purpose


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    corpus = [str(v) for r in mmbench_rows() for k, v in r.items() if k != "image" and v] * 4
    tokenizer = train_tokenizer(corpus + ["What is the number on sign 0?", "27B 37B 27D 27E"] * 4, vocab_size=400)
    cfg = TinyBackboneConfig(**BACKBONE)
    model, processor = build_tiny_llava(cfg, tokenizer)
    return save_llava(model, processor, tmp_path_factory.mktemp("vqa_tiny"), cfg)


def _eval(dataset, path, out, vqa_dir, *extra):
    return main(["eval", "--dataset", dataset, "--path", str(path), "--output-dir", str(out), "--no-progress",
                 "--protocol", "letter", f"--models.vqa_path={vqa_dir}", "--policy.baseline_name=no_vision",
                 *extra])


def _csv(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _predictions(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]


def test_mmbench_dev_run_writes_ours_and_vlmevalkit_files(vqa_dir, tmp_path, capsys):
    tsv = tmp_path / "MMBench_DEV_EN.tsv"
    write_mmbench_tsv(tsv, columns=COLUMNS, big_image=True)
    out = tmp_path / "out"
    assert _eval("mmbench", tsv, out, vqa_dir) == 0
    preds = _predictions(out)
    assert len(preds) == 8 and {p["action"] for p in preds} == {"no"}  # every rotation answered
    gold = {str(r["index"]): r["answer"] for r in mmbench_rows()}
    letters = {p["question_id"]: "ABCD"[p["answer_index"]] for p in preds}
    hits = {q: letters[q] == gold[q] for q in gold}
    circular = [all(hits[q] for q in gold if int(q) % 1_000_000 == g) for g in (7, 12, 30)]

    _, (row,) = _csv(out / "results.csv")
    run_id = row["run_id"]
    assert float(row["accuracy"]) == pytest.approx(sum(hits.values()) / 8, abs=1e-6)
    assert float(row["circular_accuracy"]) == pytest.approx(sum(circular) / 3, abs=1e-6)
    assert row["circular_n"] == "3" and float(row["circular_acc_image_scene"]) == float(circular[0])
    assert "acc_l2_coarse_perception" in row and "circular_acc_l2_coarse_perception" in row
    stem = f"seal-no_vision-{run_id}_MMBench_DEV_EN"
    assert row["vlmevalkit_files"] == stem
    summary = json.loads((out / "summary.json").read_text())["runs"][run_id]
    assert summary["metrics"]["circular_accuracy"] == pytest.approx(sum(circular) / 3)

    header, table = _csv(out / f"{stem}.csv")
    assert header == [c for c in COLUMNS if c != "image"] + ["prediction"]
    assert [r["index"] for r in table] == [str(r["index"]) for r in mmbench_rows()]  # TSV row order
    assert {r["index"]: r["prediction"] for r in table} == letters
    header, acc = _csv(out / f"{stem}_acc.csv")
    assert header == ["split", "Overall", "CP", "image_quality", "image_scene", "image_style"]
    assert acc[0]["split"] == "dev" and float(acc[0]["Overall"]) == pytest.approx(sum(circular) / 3, abs=1e-6)
    header, result = _csv(out / f"{stem}_exact_matching_result.csv")
    assert [r["g_index"] for r in result] == ["7", "12", "30"] and [int(r["hit"]) for r in result] == circular
    assert header[-3:] == ["g_index", "hit", "log"]
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["circular_n"] == 3


def test_mmbench_test_split_and_hrbench(vqa_dir, tmp_path, capsys):
    tsv = tmp_path / "MMBench_TEST_EN.tsv"
    write_mmbench_tsv(tsv, with_answers=False)
    out = tmp_path / "out"
    assert _eval("mmbench", tsv, out, vqa_dir) == 0
    assert "no answers in the file" in capsys.readouterr().out
    _, (row,) = _csv(out / "results.csv")
    assert row["accuracy"] == "" and "circular_accuracy" not in row and row["n"] == "8"
    submission = out / row["submission"]
    header, table = _csv(submission)
    assert "answer" not in header and header[-1] == "prediction" and len(table) == 8
    assert not list(out.glob("*_acc.csv"))

    hr = tmp_path / "hr_bench_8k.tsv"
    write_hrbench_tsv(hr, n_questions=2)
    out = tmp_path / "out_hr"
    assert _eval("hrbench", hr, out, vqa_dir) == 0
    preds = _predictions(out)
    assert len(preds) == 8
    _, (row,) = _csv(out / "results.csv")
    hit = {p["question_id"]: p["correct"] for p in preds}
    per_cycle = [sum(hit[str(4 * q + k)] for q in (0, 1)) / 2 for k in range(4)]
    assert float(row["cycle_mean_accuracy"]) == pytest.approx(sum(per_cycle) / 4, abs=1e-6)
    assert float(row["cycle_mean_fsp"]) == pytest.approx(sum(hit[str(k)] for k in range(4)) / 4, abs=1e-6)
    assert float(row["cycle_mean_fcp"]) == pytest.approx(sum(hit[str(4 + k)] for k in range(4)) / 4, abs=1e-6)
    header, acc = _csv(out / f"seal-no_vision-{row['run_id']}_hr_bench_8k_acc.csv")
    assert header == ["cycle", "type", "accuracy"] and [(r["cycle"], r["type"]) for r in acc][-3:] == [
        ("Average", "all"), ("Average", "single"), ("Average", "cross")]


def test_oracle_localizer_is_refused_on_tsv(vqa_dir, tmp_path, capsys):
    tsv = tmp_path / "MMBench_DEV_EN.tsv"
    write_mmbench_tsv(tsv, columns=MMBENCH_COLUMNS)
    assert _eval("mmbench", tsv, tmp_path / "o", vqa_dir, "--models.localizer=oracle") == 2
    assert "oracle" in capsys.readouterr().err
