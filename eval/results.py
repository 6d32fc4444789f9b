"""Evaluation outputs of one output folder, shared by several runs (baselines, lambda sweeps).

``OUT/predictions.jsonl``
    One JSON object per answered question, appended and flushed as soon as it is answered, tagged
    with the ``run_id`` of the run that produced it. Re-running the same run (same ``run_id``)
    skips the question ids already there, so an interrupted run loses nothing; a torn last line
    (a kill mid-write) is dropped on reopen.
``OUT/results.csv``
    One row per run (keyed by ``run_id``; re-running replaces the row). Rows of different runs may
    have different per-category columns: the header is the union, missing cells are empty.
``OUT/summary.json``
    ``{"latest": run_id, "runs": {run_id: summary}}``: the metadata and metrics of every run.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterable

from seal.core.errors import InputError

PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.json"
LEADING_COLUMNS = ("run_id", "baseline_name", "dataset", "lambda_cost", "action_rate_no", "action_rate_coarse",
                   "action_rate_full", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "avg_cost", "latency",
                   "latency_p50", "latency_p95", "mem", "fallback_rate", "escalation_rate", "n")
"""First columns of results.csv, in this order; ``acc_<category>`` and any other columns follow sorted."""


class PredictionLog:
    """Append-only ``predictions.jsonl`` of one output folder, seen through one ``run_id``."""

    def __init__(self, out_dir: str | Path, run_id: str) -> None:
        self.path = Path(out_dir) / PREDICTIONS_FILE
        self.run_id = run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._all = read_predictions(self.path)

    def records(self) -> list[dict]:
        """This run's records, in the order they were written."""
        return [r for r in self._all if r.get("run_id") == self.run_id]

    def done(self) -> set[str]:
        """Question ids this run has already answered."""
        return {str(r["question_id"]) for r in self.records()}

    def append(self, record: dict) -> None:
        """Write one record (``run_id`` added) and flush it to disk before returning."""
        self._all.append(append_record(self.path, {"run_id": self.run_id, **record}))


def append_record(path: Path, record: dict) -> dict:
    """Append ``record`` to the JSON-lines file ``path`` as one compact line, flushed and synced to disk
    before returning (an interrupted run loses nothing answered); returns ``record``."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return record


def write_results_row(out_dir: str | Path, row: dict) -> Path:
    """Insert or replace (same ``run_id``) ``row`` in ``OUT/results.csv``; returns the path."""
    path = Path(out_dir) / RESULTS_FILE
    rows = read_results(path) if path.is_file() else []
    rows = [r for r in rows if r.get("run_id") != row["run_id"]] + [{k: _cell(v) for k, v in row.items()}]
    keys = {k for r in rows for k in r}
    header = [c for c in LEADING_COLUMNS if c in keys] + sorted(keys - set(LEADING_COLUMNS))
    _atomic_write(path, _csv_text(header, rows))
    return path


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results.csv as dicts of strings."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read results table: {exc}", path) from exc


def write_summary(out_dir: str | Path, run_id: str, summary: dict) -> Path:
    """Add / replace this run's entry in ``OUT/summary.json`` and mark it the latest."""
    path = Path(out_dir) / SUMMARY_FILE
    data = {"latest": run_id, "runs": {}}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            data["runs"] = dict(old.get("runs", {}))
        except (ValueError, AttributeError) as exc:
            raise InputError(f"malformed summary (expected {{'latest', 'runs'}}): {exc}", path) from exc
    data["runs"][run_id] = summary
    _atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")
    return path


def read_predictions(path: Path, repair: bool = True) -> list[dict]:
    """Records of a predictions file, in file order; a torn final line is dropped (and, with
    ``repair``, cut from the file so that appending resumes cleanly). Missing file: []."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records: list[dict] = []
    good_chars = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_chars += len(line) + 1
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "question_id" not in rec:
                raise ValueError("not a prediction object")
        except ValueError as exc:
            if i == len(lines) - 1 or all(not rest.strip() for rest in lines[i + 1:]):
                if repair:
                    with path.open("r+", encoding="utf-8") as f:  # torn write at the end: cut it
                        f.truncate(good_chars)
                break
            raise InputError(f"line {i + 1}: malformed prediction record ({exc})", path) from exc
        records.append(rec)
        good_chars += len(line.encode("utf-8")) + 1
    return records


def last_run(records: list[dict]) -> list[dict]:
    """The records of the last ``run_id`` written (a folder's file may hold several runs)."""
    if not records:
        return []
    last = records[-1].get("run_id")
    return [r for r in records if r.get("run_id") == last]


def _cell(value: object) -> object:
    if isinstance(value, float):
        return round(value, 6)
    return "" if value is None else value


def _csv_text(header: list[str], rows: Iterable[dict]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
