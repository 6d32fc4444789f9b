"""Choice extraction, CircularEval (MMBench) and per-cycle (HR-Bench) scoring on fixture TSVs with
forced predictions, so every figure is known exactly; and the VLMEvalKit files they produce."""

import csv

import pytest

from eval.choice import extract_choice
from eval.circular import circular_metrics, circular_questions, cycle_metrics, cycle_table, score_rows
from eval.tsv_samples import hrbench_samples, mmbench_question, mmbench_samples
from eval.vlmevalkit import report_hrbench, report_mmbench
from tests.fixtures_bench import MMBENCH_COLUMNS, write_hrbench_tsv, write_mmbench_tsv

CHOICES = {"A": "green", "B": "red", "C": "blue", "D": "black"}


@pytest.mark.parametrize("reply, letter, rule", [
    ("B", "B", "option"),
    ("(C)", "C", "option"),
    ("The answer is D.", "D", "option"),
    ("It is green", "A", "text"),
    ("I think the correct answer is **C** because A and B are too dark", "C", "answer_is"),
    ("A or B", None, "none"),  # two letters: ambiguous
    ("red or blue", None, "none"),  # two option texts
    ("B is the answer, since " + "the picture shows many things " * 3, None, "none"),  # B not in the last 4 tokens
    ("no idea", None, "none"),
    ("", None, "none"),
])
def test_extract_choice_rules(reply, letter, rule):
    assert extract_choice(reply, CHOICES) == (letter, rule)


def _records(samples, letters):
    """Prediction records as the runner writes them (+ the sample's TSV fields), choosing ``letters[i]``
    for sample i (None: a free-form reply no rule can read)."""
    out = []
    for sample, letter in zip(samples, letters):
        index = None if letter is None else "ABCD".index(letter)
        out.append({"question_id": sample.question_id, "category": sample.category, "answer_index": index,
                    "answer": "I cannot tell" if letter is None else sample.options[index], **sample.extra})
    return out


def test_mmbench_circular_eval_and_files(tmp_path):
    path = tmp_path / "MMBench_DEV_EN.tsv"
    write_mmbench_tsv(path, columns=list(reversed(MMBENCH_COLUMNS)), big_image=True)  # reordered, >131072-byte field
    samples = mmbench_samples(path)
    assert [s.question_id for s in samples] == ["7", "1000007", "2000007", "3000007", "12", "1000012", "30", "1000030"]
    assert [s.extra["gold_letter"] for s in samples] == ["A", "D", "C", "B", "A", "B", "B", "A"]
    assert samples[0].question == "Hint: Look at the whole image.\nWhat is the main color of the picture?"
    assert samples[4].question == "Is this picture bright?" and samples[6].question.startswith("Which word")
    assert samples[0].image == samples[3].image == samples[6].image != samples[4].image  # references resolved
    assert samples[6].image.open_image().size == samples[0].image.open_image().size

    # q7: every rotation right; q12: rotation 1 wrong; q30: rotation 1 unreadable (no judge: wrong)
    letters = ["A", "D", "C", "B", "A", "A", "B", None]
    records = _records(samples, letters)
    rows = score_rows(records)
    assert [r.hit for r in rows] == [True, True, True, True, True, False, True, False]
    questions = circular_questions(rows)
    assert [(q.g_index, q.hit) for q in questions] == [(7, True), (12, False), (30, False)]
    assert questions[1].log.startswith("Failed in Prefetching Rolling 1: Answer is B")
    assert "exact_matching" in questions[2].log
    metrics = circular_metrics(rows)
    assert metrics["circular_accuracy"] == pytest.approx(1 / 3) and metrics["circular_n"] == 3
    assert metrics["circular_acc_image_scene"] == 1.0 and metrics["circular_acc_image_quality"] == 0.0
    assert metrics["circular_acc_l2_coarse_perception"] == pytest.approx(1 / 3)
    assert metrics["acc_l2_coarse_perception"] == pytest.approx(6 / 8)  # plain per-row accuracy
    assert metrics["choice_none_rate"] == pytest.approx(1 / 8)

    out = tmp_path / "out"
    out.mkdir()
    report = report_mmbench({"accuracy": 0.75}, records, path, out, "m")
    assert report["circular_accuracy"] == pytest.approx(1 / 3) and report["accuracy"] == 0.75
    with (out / "m_MMBench_DEV_EN_acc.csv").open(newline="") as f:
        (acc,) = list(csv.DictReader(f))
    assert list(acc) == ["split", "Overall", "CP", "image_quality", "image_scene", "image_style"]
    assert acc["split"] == "dev" and float(acc["Overall"]) == pytest.approx(1 / 3) and float(acc["image_scene"]) == 1
    with (out / "m_MMBench_DEV_EN.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        preds = list(reader)
    expected_columns = [c for c in reversed(MMBENCH_COLUMNS) if c != "image"] + ["prediction"]
    assert reader.fieldnames == expected_columns  # the TSV's columns in its order, no image
    assert [p["index"] for p in preds] == ["7", "1000007", "2000007", "3000007", "12", "1000012", "30", "1000030"]
    assert [p["prediction"] for p in preds] == ["A", "D", "C", "B", "A", "A", "B", "I cannot tell"]
    with (out / "m_MMBench_DEV_EN_exact_matching_result.csv").open(newline="") as f:
        result = list(csv.DictReader(f))
    assert [(r["index"], r["g_index"], r["hit"]) for r in result] == [("7", "7", "1"), ("12", "12", "0"),
                                                                      ("30", "30", "0")]
    assert "l2-category" in result[0] and "A" in result[0]


def test_mmbench_test_split_is_a_submission_only(tmp_path):
    path = tmp_path / "MMBench_TEST_EN.tsv"
    write_mmbench_tsv(path, with_answers=False)
    samples = mmbench_samples(path)
    assert all(s.answer is None and s.extra["gold_letter"] is None for s in samples)
    out = tmp_path / "out"
    out.mkdir()
    report = report_mmbench({"accuracy": 0.0, "acc_image_scene": 0.0, "n": 8}, _records(samples, ["A"] * 8), path,
                             out, "m")
    assert report["accuracy"] is None and "acc_image_scene" not in report and "circular_accuracy" not in report
    assert report["submission"] == "m_MMBench_TEST_EN.csv"
    assert sorted(p.name for p in out.iterdir()) == ["m_MMBench_TEST_EN.csv"]
    with (out / "m_MMBench_TEST_EN.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and "answer" not in rows[0] and {r["prediction"] for r in rows} == {"A"}


def test_hrbench_per_cycle_accuracy(tmp_path):
    path = tmp_path / "hr_bench_4k.tsv"
    columns = ["index", "answer", "question", "A", "B", "C", "D", "category", "cycle_category", "image"]
    write_hrbench_tsv(path, n_questions=2, columns=columns)  # the 8K parquet's column order
    samples = hrbench_samples(path)
    assert [(s.category, s.extra["cycle"], s.extra["gold_letter"]) for s in samples[:4]] == [
        ("single", 0, "A"), ("single", 1, "B"), ("single", 2, "C"), ("single", 3, "D")]
    assert len({s.image for s in samples[:4]}) == 1 and samples[0].image != samples[4].image
    # FSP question: cycles 0-2 right, 3 wrong; FCP question: cycle 0 right only
    letters = ["A", "B", "C", "A", "A", "A", "A", "A"]
    records = _records(samples, letters)
    rows = score_rows(records, "cycle")
    table = cycle_table(rows)
    assert table == [("0", "all", 1.0), ("0", "single", 1.0), ("0", "cross", 1.0),
                     ("1", "all", 0.5), ("1", "single", 1.0), ("1", "cross", 0.0),
                     ("2", "all", 0.5), ("2", "single", 1.0), ("2", "cross", 0.0),
                     ("3", "all", 0.0), ("3", "single", 0.0), ("3", "cross", 0.0),
                     ("Average", "all", 0.5), ("Average", "single", 0.75), ("Average", "cross", 0.25)]
    metrics = cycle_metrics(rows)
    assert (metrics["cycle_mean_accuracy"], metrics["cycle_mean_fsp"], metrics["cycle_mean_fcp"]) == (0.5, 0.75, 0.25)
    assert metrics["acc_cycle1"] == 0.5
    out = tmp_path / "out"
    out.mkdir()
    report_hrbench({}, records, path, out, "m")
    with (out / "m_hr_bench_4k_acc.csv").open(newline="") as f:
        acc = list(csv.DictReader(f))
    assert list(acc[0]) == ["cycle", "type", "accuracy"] and len(acc) == 15
    assert acc[-2] == {"cycle": "Average", "type": "single", "accuracy": "0.75"}
    with (out / "m_hr_bench_4k.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        preds = list(reader)
    assert reader.fieldnames == columns[:-1] + ["prediction"] and [p["prediction"] for p in preds] == letters


def test_mmbench_question_text_without_hint():
    assert mmbench_question("Q?", None) == "Q?"
