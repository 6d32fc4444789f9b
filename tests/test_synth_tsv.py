"""``seal bench synth --format mmbench|hrbench``: one VLMEvalKit TSV of SynthVStar scenes, read back by the
MMBench / HR-Bench readers (CircularEval copies, 4 cycles) and run through the real ``seal eval`` with a
tiny random VQA model and the ``no_vision`` baseline; the same seed gives the same bytes."""

import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from eval.readers.hrbench import read_hrbench
from eval.readers.mmbench import read_mmbench
from eval.synth.tsv_suite import HRBENCH_COLUMNS, MMBENCH_COLUMNS
from seal.cli.main import main
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava, save_llava
from seal.models.tokenizer import train_tokenizer

BACKBONE = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=1024,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)
SMALL = ["--n", "3", "--long-side", "320", "--seed", "5"]  # 2 attribute + 1 left/right question


def _synth(fmt, out, *extra):
    assert main(["bench", "synth", "--format", fmt, "--out", str(out), *SMALL, *extra]) == 0


def _header(path):
    with path.open(newline="") as f:
        return next(csv.reader(f, delimiter="\t"))


def _csv(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_tsv")
    _synth("mmbench", root / "mmb")
    _synth("hrbench", root / "hr")
    return root / "mmb" / "SynthMMBench_DEV.tsv", root / "hr" / "SynthHRBench.tsv"


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory, suites):
    mmb = read_mmbench(suites[0])
    corpus = [r.question + " " + " ".join(r.options) for r in mmb] * 4
    tokenizer = train_tokenizer(corpus + ["on the left side directly above below right"] * 4, vocab_size=400)
    cfg = TinyBackboneConfig(**BACKBONE)
    model, processor = build_tiny_llava(cfg, tokenizer)
    return save_llava(model, processor, tmp_path_factory.mktemp("vqa_tiny"), cfg)


def _eval(dataset, path, out, vqa_dir):
    return main(["eval", "--dataset", dataset, "--path", str(path), "--output-dir", str(out), "--no-progress",
                 "--protocol", "letter", f"--models.vqa_path={vqa_dir}", "--policy.baseline_name=no_vision"])


def test_mmbench_suite_has_circular_copies_and_runs_through_seal_eval(suites, vqa_dir, tmp_path):
    tsv = suites[0]
    assert _header(tsv) == list(MMBENCH_COLUMNS)
    ds = read_mmbench(tsv)
    questions = ds.questions()
    assert [q.g_index for q in questions] == [0, 1, 2]
    for q in questions:
        n = len(q.main.options)
        assert n in (2, 4) and [r.index for r in q.rows] == [q.g_index + k * 1_000_000 for k in range(n)]
        gold = q.main.options[q.main.answer_index]
        for k, row in enumerate(q.rows):  # copy k: the main row's options rotated right by k (tools.CIRCULAR)
            assert row.options == q.main.options[k:] + q.main.options[:k]
            assert row.options[row.answer_index] == gold and row.image_index == q.g_index
            assert row.split == "dev" and row.category == q.category
        assert len({r.answer for r in q.rows}) == n  # the answer visits every letter
    assert [r.index for r in ds][:3] == [0, 1, 2]  # pass by pass: every main row first
    assert [q.category for q in questions] == ["attribute_recognition", "attribute_recognition",
                                               "spatial_relationship"]
    assert [len(q.rows) for q in questions] == [4, 4, 2] and len(ds) == 10

    out = tmp_path / "out"
    assert _eval("mmbench", tsv, out, vqa_dir) == 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == len(ds) and {p["action"] for p in preds} == {"no"}
    _, (row,) = _csv(out / "results.csv")
    stem = f"seal-no_vision-{row['run_id']}_SynthMMBench_DEV"
    assert row["circular_n"] == "3" and row["vlmevalkit_files"] == stem
    _, table = _csv(out / f"{stem}.csv")
    assert len(table) == len(ds)
    _, result = _csv(out / f"{stem}_exact_matching_result.csv")
    assert [r["g_index"] for r in result] == ["0", "1", "2"]
    header, acc = _csv(out / f"{stem}_acc.csv")
    assert header[:2] == ["split", "Overall"] and acc[0]["split"] == "dev"
    assert set(header[2:]) >= {q.category for q in questions}
    assert (out / "summary.json").exists()


def test_hrbench_suite_has_four_cycles_and_runs_through_seal_eval(suites, vqa_dir, tmp_path):
    tsv = suites[1]
    assert _header(tsv) == list(HRBENCH_COLUMNS)
    ds = read_hrbench(tsv)
    assert len(ds) == 12 and [r.index for r in ds.rows] == list(range(12))
    for q, question in enumerate(ds.questions):
        assert [r.index for r in question.rows] == [4 * q + k for k in range(4)] and question.cycles == (0, 1, 2, 3)
        assert [r.answer for r in question.rows] == list("ABCD")
        assert len({r.options[r.answer_index] for r in question.rows}) == 1  # one correct text in every cycle
        if question.category == "cross":
            assert question.question.endswith("?") and "relative to" in question.question
    assert sorted(q.category for q in ds.questions) == ["cross", "single", "single"]

    out = tmp_path / "out"
    assert _eval("hrbench", tsv, out, vqa_dir) == 0
    _, (row,) = _csv(out / "results.csv")
    stem = f"seal-no_vision-{row['run_id']}_SynthHRBench"
    header, acc = _csv(out / f"{stem}_acc.csv")
    assert header == ["cycle", "type", "accuracy"]
    assert [r["cycle"] for r in acc if r["type"] == "all"] == ["0", "1", "2", "3", "Average"]
    assert (out / f"{stem}.csv").exists() and (out / f"{stem}_exact_matching_result.csv").exists()
    assert row["cycle_mean_accuracy"] != ""


def test_same_seed_same_bytes_and_test_split_without_answers(suites, tmp_path, capsys):
    for fmt, first in zip(("mmbench", "hrbench"), suites):
        _synth(fmt, tmp_path / fmt)
        assert (tmp_path / fmt / first.name).read_bytes() == first.read_bytes()
    assert main(["bench", "synth", "--format", "hrbench", "--out", str(tmp_path / "other"), "--n", "3",
                 "--long-side", "320", "--seed", "6"]) == 0
    assert (tmp_path / "other" / "SynthHRBench.tsv").read_bytes() != suites[1].read_bytes()

    _synth("mmbench", tmp_path / "test", "--split", "test")
    test = tmp_path / "test" / "SynthMMBench_TEST.tsv"
    assert "answer" not in _header(test)
    ds = read_mmbench(test)
    assert not ds.has_answers and {r.split for r in ds} == {"test"} and len(ds.questions()) == 3
    dev = read_mmbench(suites[0])
    assert ds.image_bytes(0) != dev.image_bytes(0)  # test scenes come from another stream than dev's
    capsys.readouterr()


def test_mixed_suite_categories(tmp_path, capsys):
    """The mixed suite's text-answerable and coarse questions get categories of their own (MMBench) and
    split into single / cross by their number of targets (HR-Bench)."""
    argv = ["--n", "6", "--long-side", "320", "--suite", "mixed", "--seed", "0"]
    assert main(["bench", "synth", "--format", "mmbench", "--out", str(tmp_path / "m"), *argv]) == 0
    categories = {q.category: q.main.l2_category for q in read_mmbench(tmp_path / "m" / "SynthMMBench_DEV.tsv")
                  .questions()}
    assert categories["text_answerable_attribute"] == "text_answerable"
    assert categories["coarse_attribute_recognition"] == "coarse_perception"
    assert main(["bench", "synth", "--format", "hrbench", "--out", str(tmp_path / "h"), *argv]) == 0
    hr = read_hrbench(tmp_path / "h" / "SynthHRBench.tsv")
    assert {q.category for q in hr.questions} == {"single", "cross"} and len(hr.questions) == 6
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--format", "mmbench", "--split", "train"], "--format mmbench expects"),
    (["--split", "dev"], "only with --format mmbench"),
])
def test_split_flag_errors(tmp_path, capsys, argv, message):
    assert main(["bench", "synth", "--out", str(tmp_path / "x"), "--n", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_existing_suite_is_refused_without_overwrite(suites, capsys):
    assert main(["bench", "synth", "--format", "mmbench", "--out", str(suites[0].parent), *SMALL]) == 2
    assert "already holds a suite" in capsys.readouterr().err
