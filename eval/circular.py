"""Scoring of multiple-choice TSV benchmarks from prediction records: MMBench's CircularEval and
HR-Bench's per-cycle accuracy, as VLMEvalKit computes them (``mcq_circular_eval``, ``report_acc_hrbench``).

A scored row (:func:`score_rows`) is one TSV row's verdict: the option letter extracted from the
prediction (:func:`eval.choice.extract_choice`), ``hit`` (that letter is the row's ``answer``) and
``log``. Records are :func:`eval.runner.prediction_record` lines (``answer_index``, ``answer``,
``category``) joined with their sample's TSV fields (:class:`eval.tsv_samples.TsvSample` ``extra``:
``index``, ``g_index`` or ``cycle``, ``l2_category``, ``split``, ``choices``, ``gold_letter``).

- **CircularEval** (MMBench): the rows sharing a ``g_index`` are one question; it counts only if
  every row is hit. As in VLMEvalKit's ``exact_matching`` mode, a row whose choice cannot be
  extracted makes its question wrong.
- **Per-cycle** (HR-Bench): accuracy over the rows of each ``cycle`` for ``all``, ``single`` (FSP) and
  ``cross`` (FCP), then the mean over cycles per type (``Average``). Not "all four must be right".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from eval.choice import extract_choice
from eval.metrics import category_column

HRBENCH_TYPES = ("all", "single", "cross")
"""Row types of HR-Bench's table: every row, FSP, FCP."""


@dataclass(frozen=True)
class ScoredRow:
    """One TSV row's verdict. ``choice`` is the extracted letter (None: no rule matched)."""

    index: int
    group: int
    category: str
    l2_category: str | None
    split: str | None
    prediction: str
    choice: str | None
    rule: str
    gold: str
    hit: bool


@dataclass(frozen=True)
class QuestionVerdict:
    """One CircularEval question (all rows of a ``g_index``): ``hit`` iff every row is hit."""

    g_index: int
    category: str
    l2_category: str | None
    split: str | None
    hit: bool
    log: str
    rows: tuple[ScoredRow, ...]


def prediction_text(record: dict) -> str:
    """The reply a record stands for: the chosen option's letter, else the free-form answer."""
    letters = list(record["choices"])
    index = record.get("answer_index")
    return letters[index] if index is not None else str(record.get("answer") or "")


def score_rows(records: Iterable[dict], group_key: str = "g_index") -> list[ScoredRow]:
    """Extract each record's choice and compare it with its ``gold_letter`` (records with answers only)."""
    rows = []
    for r in records:
        prediction = prediction_text(r)
        choice, rule = extract_choice(prediction, r["choices"])
        rows.append(ScoredRow(index=int(r["index"]), group=int(r[group_key]), category=str(r["category"]),
                              l2_category=r.get("l2_category"), split=r.get("split"), prediction=prediction,
                              choice=choice, rule=rule, gold=r["gold_letter"], hit=choice == r["gold_letter"]))
    return rows


def circular_questions(rows: Sequence[ScoredRow]) -> list[QuestionVerdict]:
    """Group rows by ``g_index`` (first-seen order; main row = ``index == g_index`` first) and judge each."""
    groups: dict[int, list[ScoredRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    verdicts = []
    for g, members in groups.items():
        members.sort(key=lambda r: (r.index != g, r.index))
        main = members[0]
        wrong = [(i, r) for i, r in enumerate(members) if r.choice is not None and not r.hit]
        if wrong:
            i, r = wrong[0]
            log = f"Failed in Prefetching Rolling {i}: Answer is {r.gold}, Prediction is {r.prediction}"
        elif all(r.hit for r in members):
            log = "Succeed During Pre-fetching"
        else:
            log = "Failed in Prefetch, no GPT-based answer matching under `exact_matching` policy."
        verdicts.append(QuestionVerdict(g, main.category, main.l2_category, main.split,
                                        all(r.hit for r in members), log, tuple(members)))
    return verdicts


def mean_by(items: Sequence, key: Callable, hit: Callable = lambda x: x.hit) -> dict[str, float]:
    """``{key(item): accuracy}`` over the items with a non-None key, sorted by key."""
    groups: dict[str, list[bool]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            groups.setdefault(str(k), []).append(bool(hit(item)))
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def circular_metrics(rows: Sequence[ScoredRow]) -> dict:
    """results.csv columns of an MMBench run: ``circular_accuracy`` (over questions), ``circular_n``,
    ``circular_acc_<category>``, ``circular_acc_l2_<l2-category>``; plain per-row ``acc_l2_<l2-category>``
    (per-row ``accuracy`` / ``acc_<category>`` are :func:`eval.metrics.run_metrics`'), ``choice_none_rate``."""
    questions = circular_questions(rows)
    out: dict = {"circular_accuracy": sum(q.hit for q in questions) / len(questions), "circular_n": len(questions),
                 "choice_none_rate": sum(r.choice is None for r in rows) / len(rows)}
    for name, acc in mean_by(questions, lambda q: q.category).items():
        out["circular_" + category_column(name)] = acc
    for name, acc in mean_by(questions, lambda q: q.l2_category).items():
        out["circular_acc_l2_" + category_column(name)[4:]] = acc
    for name, acc in mean_by(rows, lambda r: r.l2_category).items():
        out["acc_l2_" + category_column(name)[4:]] = acc
    return out


def cycle_table(rows: Sequence[ScoredRow]) -> list[tuple[str, str, float]]:
    """HR-Bench's ``(cycle, type, accuracy)`` rows: per cycle (sorted) ``all`` then ``single`` / ``cross``
    (types present), then ``("Average", type, mean over cycles)``. ``ScoredRow.group`` is the cycle."""
    table: list[tuple[str, str, float]] = []
    per_type: dict[str, list[float]] = {}
    for cycle in sorted({r.group for r in rows}):
        members = [r for r in rows if r.group == cycle]
        for kind in HRBENCH_TYPES:
            chosen = [r.hit for r in members if kind == "all" or r.category == kind]
            if chosen:
                acc = sum(chosen) / len(chosen)
                table.append((str(cycle), kind, acc))
                per_type.setdefault(kind, []).append(acc)
    table += [("Average", kind, sum(v) / len(v)) for kind, v in per_type.items()]
    return table


def cycle_metrics(rows: Sequence[ScoredRow]) -> dict:
    """results.csv columns of an HR-Bench run: ``cycle_mean_accuracy`` (``Average/all``, the headline),
    ``cycle_mean_fsp`` (``Average/single``), ``cycle_mean_fcp`` (``Average/cross``), ``acc_cycle<k>``
    (``k/all``) and ``choice_none_rate``."""
    names = {"all": "cycle_mean_accuracy", "single": "cycle_mean_fsp", "cross": "cycle_mean_fcp"}
    out: dict = {"choice_none_rate": sum(r.choice is None for r in rows) / len(rows)}
    for cycle, kind, acc in cycle_table(rows):
        if cycle == "Average":
            out[names[kind]] = acc
        elif kind == "all":
            out[f"acc_cycle{cycle}"] = acc
    return out
