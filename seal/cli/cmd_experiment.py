"""``seal experiment``: every policy over every suite through ``seal eval``, tables, plots, one report.

``seal experiment --suite DIR [--suite DIR2 ...] --out OUT [--policies always_full,always_coarse,no_vision,
random_policy_matched,uncertainty_threshold,learned,oracle] [--limit N] [--seeds 0,1,2] [--dataset synth|vstar]
[--lambda-heads DIR,DIR] [--heads DIR,DIR] [--thresholds 0.1,0.3]
[--pruning-ratios 0.5,0.25 [--pruning-modes stride,topk_norm]] [--search-table] [--cache-reuse-check]
[--config YAML ...] [--section.field=value ...]``

Each (suite, policy) is a ``seal eval`` run in ``OUT/<suite>/<policy>`` (seeded policies:
``.../seed<S>``), resumed when re-run; ``random_policy_matched`` takes the ``learned`` policy's
action rates on the same suite, ``oracle`` the cheapest right action of the forced runs
(:mod:`eval.experiment`). Writes ``main_table.csv``, ``action_ratio.csv``, ``pareto.csv`` /
``pareto.json``, the analyses (error slices, calibration, latency per stage), the sweeps'
``pareto_<sweep>.csv/json``, three PNG plots and ``report.html`` into OUT (:mod:`eval.experiment_report`); the
main table is printed, its rows as the last stdout line (JSON).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seal.cli.common import add_config_args, print_json_line
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors
from seal.core.runs import git_revision


def register(sub: argparse._SubParsersAction) -> None:
    from eval.experiment import POLICIES

    p = sub.add_parser("experiment", help="the policy x suite matrix: main table, Pareto points, plots, report.html")
    p.add_argument("--suite", action="append", required=True, type=Path, metavar="DIR",
                   help="benchmark folder (repeat for several suites)")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="experiment folder")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma list, table order")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N questions of each suite")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the random policies (comma list)")
    p.add_argument("--dataset", default="synth", choices=("synth", "vstar"), help="benchmark reader of the suites")
    p.add_argument("--lambda-heads", default="", metavar="DIR,DIR",
                   help="lambda sweep: the learned policy once per head (heads trained with other lambda_cost)")
    p.add_argument("--heads", default="", metavar="DIR,DIR",
                   help="other trained heads (e.g. the ablations of configs/ablations/policy_ablate_*.yaml): the "
                        "learned policy once per head")
    p.add_argument("--thresholds", default="", metavar="T,T",
                   help="threshold sweep: uncertainty_threshold once per policy.baseline_threshold")
    p.add_argument("--pruning-ratios", default="", metavar="R,R",
                   help="pruning sweep: always_full with each image keeping this share of its vision tokens "
                        "(the others removed from the model's input)")
    p.add_argument("--pruning-modes", default="stride", metavar="M,M",
                   help="how the pruning sweep cuts the tokens: stride, topk_norm (the proxies), merger (the trained "
                        "token merger, vision_budget.merger_path), pruners (the trained layer pruners, "
                        "vision_budget.pruners_path), entropy (the entropy cascade with alpha = ratio)")
    p.add_argument("--search-table", action="store_true",
                   help="also the search alone per strategy (vstar, bfs) on each suite's targets with the "
                        "search model: found@IoU0.5, nodes, model calls (search_only.csv)")
    p.add_argument("--cache-reuse-check", action="store_true",
                   help="also run the learned policy with agent.cache_reuse=false (latency with and without)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eval.experiment import PRUNING_MODES, Sweeps, parse_policies, run_experiment, run_records, suite_names
    from eval.experiment_report import write_report

    policies = parse_policies(args.policies)
    seeds = _numbers(args.seeds, int, "--seeds")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit: expected >= 1, found {args.limit}")
    for suite in args.suite:
        if not suite.is_dir():
            raise InputError("--suite: expected a benchmark folder", suite)
    thresholds = _numbers(args.thresholds, float, "--thresholds")
    ratios = _numbers(args.pruning_ratios, float, "--pruning-ratios")
    modes = [m.strip() for m in args.pruning_modes.split(",") if m.strip()]
    if any(not 0 < r <= 1 for r in ratios) or any(m not in PRUNING_MODES for m in modes) or not modes:
        raise InputError(f"--pruning-ratios / --pruning-modes: expected ratios in (0, 1] and modes among "
                         f"{', '.join(PRUNING_MODES)}, found {args.pruning_ratios!r} / {args.pruning_modes!r}")
    heads = _head_dirs(args.lambda_heads, "--lambda-heads")
    others = _head_dirs(args.heads, "--heads")
    sweeps = Sweeps(lambda_heads=heads, heads=others, thresholds=thresholds, pruning_ratios=ratios, pruning_modes=modes,
                    cache_reuse=args.cache_reuse_check)
    out = writable_dir(args.out, "--out")

    def run_eval(suite: Path, folder: Path, overrides: list[str]) -> list[dict]:
        from seal.cli import cmd_eval

        ns = argparse.Namespace(dataset=args.dataset, path=str(suite), output_dir=str(folder), limit=args.limit,
                                protocol=None, seed=0, no_progress=True, num_processes=1, config=args.config,
                                overrides=[*(args.overrides or []), *overrides])
        if cmd_eval.run(ns) != 0:
            raise InputError(f"seal eval failed in {folder}")
        return run_records(folder, args.limit)

    start = time.perf_counter()
    result = run_experiment(args.suite, out, policies, seeds, run_eval, sweeps)
    main_rows = result.main_rows
    meta = {"suites": ", ".join(str(s) for s in args.suite), "policies": ", ".join(policies),
            "seeds": ", ".join(map(str, seeds)), "limit": args.limit, "git_revision": git_revision(),
            "seconds": round(time.perf_counter() - start, 1)}
    search_rows = [row for suite, name in zip(args.suite, suite_names(args.suite))
                   for row in _search_table(args, suite, out / name / "search_only.json", name)] \
        if args.search_table else []
    with write_errors(out, "--out"):
        write_report(out, result, meta, search_rows)
    print(f"{'suite':<12} {'policy':<22} {'accuracy':>14} {'95% CI':>15} {'tokens':>8} {'no/coarse/full':>16} n")
    for r in main_rows + result.sweep_rows:
        acc = f"{r['accuracy']:.3f}" + (f"±{r['accuracy_std']:.3f}" if r["seeds"] > 1 else "")
        print(f"{r['suite']:<12} {r['policy']:<22} {acc:>14} [{r['accuracy_ci_low']:.3f}, {r['accuracy_ci_high']:.3f}] "
              f"{r['mean_vision_tokens']:>8.1f} {r['action_rate_no']:.2f}/{r['action_rate_coarse']:.2f}/"
              f"{r['action_rate_full']:.2f}    {r['n']}")
    print(f"-> {out} ({meta['seconds']} s)", flush=True)
    print_json_line(main_rows)
    return 0


def _numbers(text: str, kind: type, flag: str) -> list:
    """A comma list of ``kind`` (int or float); a malformed one is an InputError naming ``flag``."""
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        what = "integers" if kind is int else "numbers"
        raise InputError(f"{flag}: expected a comma list of {what}, found {text!r}") from exc


def _head_dirs(text: str, flag: str) -> list[Path]:
    """A comma list of policy head directories; a missing one is an InputError naming ``flag``."""
    heads = [Path(h.strip()) for h in text.split(",") if h.strip()]
    for head in heads:
        if not head.is_dir():
            raise InputError(f"{flag}: expected a policy head directory", head)
    return heads


def _search_table(args: argparse.Namespace, suite: Path, report: Path, name: str) -> list[dict]:
    """``seal bench vsm`` on the suite's (sample, target) pairs with vstar and bfs (no patch
    calibration), under the experiment's resolved image / models / search / hit-check settings (written
    beside the report); one row per strategy of its report (kept at ``report``; re-used when present)."""
    import dataclasses
    import json

    from eval.experiment_report import search_rows
    from seal.cli import cmd_bench
    from seal.cli.common import resolve_config
    from seal.config import SearchCommandConfig
    import yaml

    from seal.core.config import to_dict

    if not report.is_file():
        keep = {f.name for f in dataclasses.fields(SearchCommandConfig)}
        settings = report.with_name("search_only_config.yaml")
        report.parent.mkdir(parents=True, exist_ok=True)
        resolved = {k: v for k, v in to_dict(resolve_config(args)).items() if k in keep}
        settings.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        ns = argparse.Namespace(model=None, bench=suite, n_samples=0, n_targets=args.limit or 100, threads=1,
                                out=report, timing_calls=1, strategies="vstar,bfs", no_patch_calibration=True,
                                hit_check_model=None, config=[str(settings)], overrides=[])
        cmd_bench.run_vsm(ns)
    return search_rows(name, json.loads(report.read_text(encoding="utf-8")))
