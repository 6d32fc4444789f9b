"""The files of ``seal experiment`` (see :mod:`eval.experiment`) in its output folder.

``main_table.csv``   suite, policy, accuracy (± std over seeds), 95% CI, mean vision tokens, action rates, n
``seed_runs.csv``    one row per seeded run (random_policy_matched per seed)
``action_ratio.csv`` suite, policy, the no / coarse / full rates
``pareto.csv`` / ``pareto.json``  per suite, the non-dominated accuracy-vs-tokens points
``accuracy_vs_tokens.png``, ``action_ratio.png``  the plots (matplotlib, Agg)
``error_slices.csv`` accuracy (95% CI) per (suite, policy, action taken, category)
``calibration.csv``  per (suite, policy, action): answer and policy confidence, their ECE
``latency.csv``      per (suite, policy): p50 / p95 seconds per question and per agent stage, peak memory
``reliability.png``  reliability diagrams of the answers per action (the learned policy's run)
``sweeps.csv``       every sweep run (lambda heads, uncertainty thresholds, cache reuse off)
``pareto_<sweep>.csv`` / ``.json``  per suite, every point of that sweep with ``on_front``
``search_only.csv``  with ``--search-table``: the search alone per strategy (found@IoU0.5, nodes, model calls)
``report.html``      the tables and plots in one self-contained page (PNGs inlined as base64)
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Sequence

from eval import experiment_analysis as analysis
from eval.experiment import ExperimentResult, pareto_front
from eval.metrics import ACTIONS

MAIN_COLUMNS = ("suite", "policy", "accuracy", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high",
                "mean_vision_tokens", "mean_vision_tokens_std", "action_rate_no", "action_rate_coarse",
                "action_rate_full", "n", "seeds", "target_ratios")
RATIO_COLUMNS = ("suite", "policy", *(f"action_rate_{a}" for a in ACTIONS))
PARETO_COLUMNS = ("suite", "policy", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "mean_vision_tokens")
PLOTS = ("accuracy_vs_tokens.png", "action_ratio.png", "reliability.png")
SLICE_COLUMNS = ("suite", "policy", "action", "category", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high")
CALIBRATION_COLUMNS = ("suite", "policy", "action", "n", "accuracy", "answer_confidence", "answer_ece",
                       "policy_confidence", "policy_ece")
SEARCH_COLUMNS = ("suite", "strategy", "n", "found_rate", "confident_hit_rate", "mean_nodes_all", "mean_nodes_found",
                  "mean_model_calls", "mean_hit_check_calls", "mean_seconds")
SWEEP_COLUMNS = ("suite", "sweep", "value", "policy", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                 "mean_vision_tokens", "action_rate_no", "action_rate_coarse", "action_rate_full", "n", "on_front")


def search_rows(suite: str, report: dict) -> list[dict]:
    """One :data:`SEARCH_COLUMNS` row per strategy of a ``seal bench vsm`` report."""
    return [{"suite": suite, "strategy": name, **{k: m.get(k) for k in SEARCH_COLUMNS[2:]}}
            for name, m in report["search"].items()]


def write_report(out: Path, result: ExperimentResult, meta: dict, search: Sequence[dict] = ()) -> list[Path]:
    """Write every file above into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    main_rows = result.main_rows
    front = [r for suite in _suites(main_rows) for r in pareto_front([r for r in main_rows if r["suite"] == suite])]
    slices = [row for (suite, policy), recs in result.records.items()
              for row in analysis.error_slices(suite, policy, recs)]
    calibration = [row for (suite, policy), recs in result.records.items()
                   for row in analysis.calibration(suite, policy, recs)]
    latency = [analysis.latency(suite, policy, recs) for (suite, policy), recs in result.records.items()]
    latency_columns = list(dict.fromkeys(k for row in latency for k in row))
    paths = [_write_csv(out / "main_table.csv", MAIN_COLUMNS, main_rows),
             _write_csv(out / "action_ratio.csv", RATIO_COLUMNS, main_rows),
             _write_csv(out / "pareto.csv", PARETO_COLUMNS, front),
             _write_csv(out / "error_slices.csv", SLICE_COLUMNS, slices),
             _write_csv(out / "calibration.csv", CALIBRATION_COLUMNS, calibration),
             _write_csv(out / "latency.csv", latency_columns, latency)]
    if search:
        paths.append(_write_csv(out / "search_only.csv", SEARCH_COLUMNS, search))
    if result.seed_rows:
        paths.append(_write_csv(out / "seed_runs.csv", ("seed", *MAIN_COLUMNS), result.seed_rows))
    paths.append(_write_json(out / "pareto.json", {s: [{k: r[k] for k in PARETO_COLUMNS[1:]} for r in front
                                                       if r["suite"] == s] for s in _suites(main_rows)}))
    sweep_rows = _mark_fronts(result.sweep_rows)
    if sweep_rows:
        paths.append(_write_csv(out / "sweeps.csv", SWEEP_COLUMNS, sweep_rows))
    for sweep in dict.fromkeys(r["sweep"] for r in sweep_rows):
        rows = [r for r in sweep_rows if r["sweep"] == sweep]
        paths.append(_write_csv(out / f"pareto_{sweep}.csv", SWEEP_COLUMNS, rows))
        paths.append(_write_json(out / f"pareto_{sweep}.json", {s: [{k: r[k] for k in SWEEP_COLUMNS[1:]} for r in rows
                                                                    if r["suite"] == s] for s in _suites(rows)}))
    pngs = {PLOTS[0]: plot_accuracy_vs_tokens(main_rows + sweep_rows, front),
            PLOTS[1]: plot_action_ratio(main_rows), PLOTS[2]: plot_reliability(result.records)}
    for name, data in pngs.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    page = out / "report.html"
    tables = [("Main table", MAIN_COLUMNS, main_rows),
              ("Pareto front (accuracy vs mean vision tokens; the oracle is a reference, not on it)",
               PARETO_COLUMNS, front),
              ("Sweeps", SWEEP_COLUMNS, sweep_rows),
              ("Search alone per strategy", SEARCH_COLUMNS, search),
              ("Calibration per action (ECE, 10 bins)", CALIBRATION_COLUMNS, calibration),
              ("Latency per stage (seconds) and peak memory (MB)", latency_columns, latency),
              ("Error slices: action x category", SLICE_COLUMNS, slices)]
    page.write_text(report_html(tables, pngs, meta), encoding="utf-8")
    return [*paths, page]


def _mark_fronts(rows: Sequence[dict]) -> list[dict]:
    """``rows`` with ``on_front``: whether the point is on its (suite, sweep)'s Pareto front."""
    out = []
    for key in dict.fromkeys((r["suite"], r["sweep"]) for r in rows):
        group = [r for r in rows if (r["suite"], r["sweep"]) == key]
        front = {id(r) for r in pareto_front(group)}
        out += [{**r, "on_front": id(r) in front} for r in group]
    return out


def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def _suites(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["suite"] for r in rows))


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", restval="", lineterminator="\n")
        w.writeheader()
        w.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return path


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_accuracy_vs_tokens(rows: Sequence[dict], front: Sequence[dict]) -> bytes:
    """One panel per suite: every policy at (mean vision tokens, accuracy) with its 95% interval (and
    the token std over seeds), each its own colour and labelled; each sweep's runs joined by a line,
    by increasing tokens; the Pareto front dashed; the legend beside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = _suites(rows)
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(suites), figsize=(7.5 * len(suites), 5.0), squeeze=False)
    for ax, suite in zip(axes[0], suites):
        mine = [r for r in rows if r["suite"] == suite]
        policies = [r for r in mine if "sweep" not in r]
        for k, r in enumerate(policies):
            yerr = [[r["accuracy"] - r["accuracy_ci_low"]], [r["accuracy_ci_high"] - r["accuracy"]]]
            ax.errorbar(r["mean_vision_tokens"], r["accuracy"], yerr=yerr, xerr=r.get("mean_vision_tokens_std") or None,
                        fmt="o", capsize=3, color=colours[k % len(colours)], label=r["policy"])
            ax.annotate(r["policy"], (r["mean_vision_tokens"], r["accuracy"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        for k, sweep in enumerate(dict.fromkeys(r["sweep"] for r in mine if "sweep" in r)):
            pts = sorted((r for r in mine if r.get("sweep") == sweep), key=lambda r: r["mean_vision_tokens"])
            ax.plot([r["mean_vision_tokens"] for r in pts], [r["accuracy"] for r in pts], marker="sDv^P"[k % 5],
                    ms=5, lw=0.8, alpha=0.8, color="0.35", label=f"sweep: {sweep} ({len(pts)} runs)")
        pts = [r for r in front if r["suite"] == suite]
        ax.plot([r["mean_vision_tokens"] for r in pts], [r["accuracy"] for r in pts], "k--", lw=0.8,
                label="Pareto front")
        ax.set(title=suite, xlabel="mean vision tokens per question", ylabel="accuracy (95% CI)", ylim=(-0.05, 1.05))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def plot_action_ratio(rows: Sequence[dict]) -> bytes:
    """Stacked bars of the no / coarse / full rates, one bar per (suite, policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['suite']}\n{r['policy']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows)), 4.0))
    bottom = [0.0] * len(rows)
    for a, color in zip(ACTIONS, ("#bbbbbb", "#6fa8dc", "#cc4125")):
        values = [r[f"action_rate_{a}"] for r in rows]
        ax.bar(range(len(rows)), values, bottom=bottom, color=color, label=a)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="action rate", ylim=(0, 1.0))
    ax.legend(title="action", fontsize=8)
    return _png(fig)


def plot_reliability(records: dict[tuple[str, str], list[dict]]) -> bytes:
    """Reliability diagrams of the answers (chosen option's probability vs accuracy), one panel per
    action, of the learned policy's run in each suite (else the first run of the suite)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ACTIONS) + 1, figsize=(4.0 * (len(ACTIONS) + 1), 3.6), squeeze=False)
    suites = list(dict.fromkeys(s for s, _ in records))
    for ax, action in zip(axes[0], (*ACTIONS, "all")):
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        for suite in suites:
            key = (suite, "learned") if (suite, "learned") in records else next(k for k in records if k[0] == suite)
            bins = analysis.reliability(records[key], action)
            if bins is not None:
                conf, acc, count = bins
                keep = count > 0
                ax.plot(conf[keep], acc[keep], "o-", label=f"{suite} ({key[1]}, n={int(count.sum())})")
        ax.set(title=f"action: {action}", xlabel="answer confidence", ylabel="accuracy", xlim=(0, 1),
               ylim=(-0.03, 1.05))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def report_html(tables: Sequence[tuple[str, Sequence[str], Sequence[dict]]], pngs: dict[str, bytes], meta: dict) -> str:
    """The self-contained page: metadata, the ``(title, columns, rows)`` tables, inlined plots."""
    def table(columns: Sequence[str], data: Sequence[dict]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                       for r in data)
        return f"<table><tr>{head}</tr>{body}</table>"

    imgs = "".join(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
                   f'{base64.b64encode(data).decode("ascii")}"><figcaption>{html.escape(name)}</figcaption></figure>'
                   for name, data in pngs.items())
    meta_items = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in meta.items())
    sections = "".join(f"<h2>{html.escape(title)}</h2>{table(columns, rows)}"
                       for title, columns, rows in tables if rows)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>seal experiment</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
            f"<h1>seal experiment</h1><ul>{meta_items}</ul>{sections}"
            f"<h2>Plots</h2>{imgs}</body></html>\n")


def _fmt(v: object) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)
