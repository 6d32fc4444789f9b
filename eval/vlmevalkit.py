"""Result files in VLMEvalKit's layout, written beside predictions.jsonl / results.csv / summary.json.

Per run (``<model>`` = ``seal-<policy>-<run_id>``, ``<dataset>`` = the TSV's file stem, e.g.
``MMBench_DEV_EN``, ``hr_bench_4k``), in the output folder:

``<model>_<dataset>.csv``
    The prediction file: every column of the benchmark TSV except ``image``, in the TSV's order and
    row order, plus ``prediction`` (the letter the agent chose). One row per answered TSV row
    (rotations / cycles included). For an MMBench TEST file this is the submission file.
``<model>_<dataset>_exact_matching_result.csv``
    Per-verdict rows (answers only): the prediction table with column names lower-cased except
    single capital letters, plus ``hit`` (0/1) and ``log``. MMBench keeps only the main rows
    (``index == g_index``, one per question) and adds ``g_index``; HR-Bench keeps every row.
``<model>_<dataset>_acc.csv``
    MMBench: ``split, Overall, <l2-category abbreviations>, <categories>`` (CircularEval accuracy, one
    row per split). HR-Bench: ``cycle, type, accuracy`` (per cycle, then ``Average``). Fractions 0..1.

CSVs are written as VLMEvalKit writes them (``QUOTE_ALL``, UTF-8, no index column). xlsx is not written.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from eval.circular import (QuestionVerdict, ScoredRow, circular_metrics, circular_questions, cycle_metrics,
                           cycle_table, mean_by, prediction_text, score_rows)
from eval.readers.tsv import TsvReader
from eval.results import SUMMARY_FILE, PredictionLog, write_results_row, write_summary

JUDGE = "exact_matching"
"""VLMEvalKit's judge name when no LLM matches free-form answers (ours: rule-based only)."""
MMB_ABBRS = {
    "coarse_perception": "CP", "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C", "attribute_reasoning": "AR", "relation_reasoning": "RR",
    "logic_reasoning": "LR",
}
"""VLMEvalKit's ``MMB_abbrs``: l2-category -> ``_acc.csv`` column."""
NO_ANSWER_METRICS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high")


def model_name(policy: str, run_id: str) -> str:
    """``<model>`` of the file names: ``seal-<policy>-<run_id>`` (one per run, so runs sharing a folder
    never overwrite each other's files)."""
    return f"seal-{policy}-{run_id}"


def file_stem(model: str, tsv_path: Path) -> str:
    return f"{model}_{Path(tsv_path).stem}"


def write_prediction_table(tsv_path: Path, predictions: dict[int, str], path: Path) -> list[dict]:
    """Stream the TSV and write its answered rows (all columns but ``image``, plus ``prediction``) to
    ``path``; returns those rows (text columns only) in file order."""
    reader = TsvReader(tsv_path, ("index",))
    columns = [c for c in reader.columns if c != "image"] + ["prediction"]
    rows = []
    for row in reader:
        index = row.integer("index")
        if index in predictions:
            rows.append({**{c: row.values[c] for c in columns[:-1]}, "prediction": predictions[index]})
    _write_csv(path, columns, rows)
    return rows


def write_result_table(rows: Sequence[dict], verdicts: dict[int, tuple[bool, str]], path: Path,
                       g_index: dict[int, int] | None = None) -> None:
    """The ``_result`` file: ``rows`` whose ``index`` has a verdict, columns lower-cased (single capital
    letters kept), plus ``g_index`` (circular datasets), ``hit`` and ``log``."""
    out = []
    for row in rows:
        index = int(row["index"])
        if index not in verdicts:
            continue
        renamed = {(k if len(k) == 1 and k.isupper() else k.lower()): v for k, v in row.items()}
        if g_index is not None:
            renamed["g_index"] = g_index[index]
        hit, log = verdicts[index]
        out.append({**renamed, "hit": int(hit), "log": log})
    columns = list(out[0]) if out else ["index", "hit", "log"]
    _write_csv(path, columns, out)


def write_mcq_acc(questions: Sequence[QuestionVerdict], path: Path) -> None:
    """``split, Overall, <l2 abbreviations>, <categories>``; one row per split (``none`` without one)."""
    l2_names = sorted({q.l2_category for q in questions if q.l2_category is not None})
    categories = sorted({q.category for q in questions})
    columns = ["split", "Overall"] + [MMB_ABBRS.get(n, n) for n in l2_names] + categories
    rows = []
    for split in sorted({q.split or "none" for q in questions}):
        members = [q for q in questions if (q.split or "none") == split]
        row = {"split": split, "Overall": sum(q.hit for q in members) / len(members)}
        row.update({MMB_ABBRS.get(k, k): v for k, v in mean_by(members, lambda q: q.l2_category).items()})
        row.update(mean_by(members, lambda q: q.category))
        rows.append(row)
    _write_csv(path, columns, rows)


def write_cycle_acc(rows: Sequence[ScoredRow], path: Path) -> None:
    """HR-Bench's ``cycle, type, accuracy`` table (:func:`eval.circular.cycle_table`)."""
    _write_csv(path, ["cycle", "type", "accuracy"],
               [{"cycle": c, "type": t, "accuracy": a} for c, t, a in cycle_table(rows)])


# ---------------------------------------------------------------------- per-dataset reports
def report_mmbench(metrics: dict, records: Sequence[dict], tsv_path: Path, out: Path, model: str) -> dict:
    """Write the VLMEvalKit files of an MMBench run; returns ``metrics`` with the CircularEval figures
    (dev) or without accuracies (test: no answers, the prediction file is the submission)."""
    stem = file_stem(model, tsv_path)
    table = write_prediction_table(tsv_path, _predictions(records), out / f"{stem}.csv")
    answered = [r for r in records if r.get("gold_letter") is not None]
    if not answered:
        return _without_accuracy(metrics, out / f"{stem}.csv")
    rows = score_rows(answered, "g_index")
    questions = circular_questions(rows)
    verdicts = {q.g_index: (q.hit, q.log) for q in questions}
    g_of = {r.index: r.group for r in rows}
    write_result_table(table, verdicts, out / f"{stem}_{JUDGE}_result.csv", g_index=g_of)
    write_mcq_acc(questions, out / f"{stem}_acc.csv")
    return {**metrics, **circular_metrics(rows), "vlmevalkit_files": stem}


def report_hrbench(metrics: dict, records: Sequence[dict], tsv_path: Path, out: Path, model: str) -> dict:
    """Write the VLMEvalKit files of an HR-Bench run; returns ``metrics`` with the per-cycle figures."""
    stem = file_stem(model, tsv_path)
    table = write_prediction_table(tsv_path, _predictions(records), out / f"{stem}.csv")
    rows = score_rows(records, "cycle")
    verdicts = {r.index: (r.hit, f"rule {r.rule}: answer {r.gold}, choice {r.choice}") for r in rows}
    write_result_table(table, verdicts, out / f"{stem}_{JUDGE}_result.csv")
    write_cycle_acc(rows, out / f"{stem}_acc.csv")
    return {**metrics, **cycle_metrics(rows), "vlmevalkit_files": stem}


REPORTS = {"mmbench": report_mmbench, "hrbench": report_hrbench}
"""``--dataset`` -> report ``(metrics, records, tsv_path, out_dir, model) -> metrics``."""


def report_run(run: Any, samples: Sequence[Any], out: Path, row: dict) -> dict:
    """After :func:`eval.runner.evaluate` of a TSV benchmark: write the VLMEvalKit files and put the
    benchmark's figures into the run's results.csv row and summary.json entry.

    Args:
        run: the :class:`~eval.runner.EvalRun` (``dataset``, ``path``, ``run_id``, ``policy_name``).
        samples: its :class:`~eval.tsv_samples.TsvSample` list (their ``extra`` joins the records).
        out: the output folder; row: the results.csv row ``evaluate`` returned.

    Returns:
        The updated row (also written to results.csv).
    """
    out = Path(out)
    extra = {s.question_id: s.extra for s in samples}
    records = [{**r, **extra[r["question_id"]]} for r in PredictionLog(out, run.run_id).records()
               if r["question_id"] in extra]
    base = {k: v for k, v in row.items() if k not in ("run_id", "baseline_name", "dataset", "lambda_cost")}
    metrics = REPORTS[run.dataset](base, records, Path(run.path), out, model_name(run.policy_name, run.run_id))
    row = {k: row[k] for k in ("run_id", "baseline_name", "dataset", "lambda_cost")} | metrics
    write_results_row(out, row)
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))["runs"][run.run_id]
    summary["metrics"] = metrics
    if metrics.get("accuracy") is None:
        summary["accuracy_ci95"] = None
    write_summary(out, run.run_id, summary)
    return row


def _predictions(records: Sequence[dict]) -> dict[int, str]:
    return {int(r["index"]): prediction_text(r) for r in records}


def _without_accuracy(metrics: dict, submission: Path) -> dict:
    """No answers (a TEST split): accuracies are not computed, the prediction file is the submission."""
    kept = {k: v for k, v in metrics.items() if not k.startswith("acc_")}
    return {**kept, **{k: None for k in NO_ANSWER_METRICS}, "submission": submission.name,
            "vlmevalkit_files": submission.stem}


def _write_csv(path: Path, columns: list[str], rows: Sequence[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, quoting=csv.QUOTE_ALL, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
