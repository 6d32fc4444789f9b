"""``seal bench``: the benchmarks behind the project's figures, and the benchmark generator.

``seal bench synth --out DIR [--format vstar|mmbench|hrbench] [--n N] [--seed S] [--split SPLIT]
[--suite vstar|mixed] [--long-side PX] [--overwrite] [--config YAML ...] [--synth.field=value ...]``
    writes a SynthVStar benchmark plus ``config.yaml`` and ``run.json``; one summary line. ``vstar``
    (default): the V*Bench-layout folders (:mod:`eval.synth.generate`), ``--split train|val|test``.
    ``mmbench`` / ``hrbench``: one VLMEvalKit TSV of the same scenes (:mod:`eval.synth.tsv_suite`);
    MMBench ``--split dev`` (default, answers; scenes of synth split val) or ``test`` (no answers; synth
    split test), HR-Bench ``--split train|val|test``. The flags set fields of the ``synth`` section
    (over the config files); a flag and a dotted override of the same field must agree.

``seal bench search --bench DIR [--n-targets 100] [--strategies vstar,bfs,...] [--out REPORT.json]``
    every expansion strategy with the oracle localizer (:mod:`eval.bench_search`); ``--big``: peak
    memory of ``seal search`` on a generated 16384 px image instead.

``seal bench vsm [--model checkpoints/vsm_tiny] [--bench runs/synth_test_vsm] [--n-targets 100]
[--hit-check-model DIR] [--strategies vstar[,bfs]] [--no-patch-calibration] [--out REPORT.json]``
    the search model: targets found, nodes against breadth-first, calibration, speed, memory
    (:mod:`eval.bench_vsm`).

``seal bench vqa [--model checkpoints/vqa_tiny] [--data runs/synth_test_mixed] [--n 300] [--limit N]
[--out REPORT.json]``
    the VQA LLM with ground-truth crops and on the global view (:mod:`eval.bench_vqa`).

``seal bench answer-cost [--model checkpoints/vqa_tiny] --data DIR [--cuts none,stride:0.5,...] [--repeats 5]
[--limit N] [--threads 1] --out REPORT.json``
    accuracy, image tokens read, FLOPs and wall time of the answering forward under each vision-token
    cut, and their ratios to the uncut forward (:mod:`eval.answer_cost`).

``search`` and ``vsm`` take ``--config`` files and ``--section.field=value`` overrides of the
``seal search`` config (:class:`seal.config.SearchCommandConfig`); their report is JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seal.cli.cmd_search import STRATEGIES as SEARCH_STRATEGIES
from seal.cli.common import add_config_args, resolve_config
from seal.core.runs import write_run_record
from seal.core.config import parse_override
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors

FLAG_FIELDS = {"n": "n", "seed": "seed", "split": "split", "suite": "suite", "long_side": "long_side"}
"""argparse dest -> ``synth`` field it sets."""

SYNTH_FORMATS = ("vstar", "mmbench", "hrbench")
"""``seal bench synth --format``: V*Bench folders (default) or one VLMEvalKit TSV (:mod:`eval.synth.tsv_suite`)."""
VSM_STRATEGIES = ("vstar", "bfs")
"""``seal bench vsm`` compares V* with breadth-first search (same model)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: synth (write SynthVStar), search (oracle search), "
                                     "vsm (search model), vqa (VQA LLM), answer-cost (cost of the "
                                     "answering forward per token cut)")
    actions = p.add_subparsers(dest="bench_command", metavar="ACTION")
    actions.required = True
    _register_synth(actions)
    _register_search(actions)
    _register_vsm(actions)
    _register_vqa(actions)
    _register_answer_cost(actions)


# --------------------------------------------------------------------------- synth
def _register_synth(actions: argparse._SubParsersAction) -> None:
    s = actions.add_parser("synth", help="write a synthetic V*Bench-format benchmark (SynthVStar)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must not hold a benchmark)")
    s.add_argument("--format", dest="bench_format", choices=SYNTH_FORMATS, default="vstar",
                   help="vstar: V*Bench folders (default); mmbench / hrbench: one VLMEvalKit TSV with "
                        "CircularEval copies / 4 cycles per question")
    s.add_argument("--n", type=int, help="number of questions (synth.n)")
    s.add_argument("--seed", type=int, help="base seed (synth.seed)")
    s.add_argument("--split", choices=("train", "val", "test", "dev"),
                   help="split; splits never share a scene (synth.split). --format mmbench: dev (default, "
                        "with answers; synth split val) or test (no answer column)")
    s.add_argument("--suite", choices=("vstar", "mixed"),
                   help="vstar: small-target questions; mixed: + text-only and coarse questions (synth.suite)")
    s.add_argument("--long-side", dest="long_side", type=int, metavar="PX",
                   help="median long image side in px, 256..8192 (synth.long_side)")
    s.add_argument("--overwrite", action="store_true", help="replace a benchmark already in --out")
    add_config_args(s)
    s.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from eval.synth.config import BenchSynthConfig
    from eval.synth.generate import generate_benchmark, prepare_output_dir

    mmbench_split = _mmbench_split(args)
    args.overrides = _with_flags(args)
    cfg = resolve_config(args, BenchSynthConfig, search_profile=False)
    out = Path(args.out)
    writable_dir(out, "--out")  # a read-only folder, a file or a full disk: before any work
    if args.bench_format != "vstar":
        return _run_synth_tsv(args, cfg, out, mmbench_split)
    prepare_output_dir(out, args.overwrite)  # fail on a bad --out before any work
    start = time.perf_counter()
    with write_errors(out, "--out"):  # disk full while writing: one line
        counts = generate_benchmark(cfg.synth, out, overwrite=True)
        write_run_record(out, cfg)
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {cfg.synth.n} SynthVStar {cfg.synth.split} samples ({parts}) to {out} "
          f"in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _mmbench_split(args: argparse.Namespace) -> str | None:
    """``--format mmbench``: the MMBench split (dev | test), ``args.split`` set to its scene stream."""
    if args.bench_format != "mmbench":
        if args.split == "dev":
            raise InputError(f"--split dev: only with --format mmbench (--format {args.bench_format} takes "
                             "train, val or test)")
        return None
    from eval.synth.tsv_suite import MMBENCH_SPLITS

    split = args.split or "dev"
    if split not in MMBENCH_SPLITS:
        raise InputError(f"--split {split}: --format mmbench expects one of {sorted(MMBENCH_SPLITS)}")
    args.split = MMBENCH_SPLITS[split]
    return split


def _run_synth_tsv(args: argparse.Namespace, cfg, out: Path, mmbench_split: str | None) -> int:
    """``--format mmbench|hrbench``: one TSV in ``out`` (:mod:`eval.synth.tsv_suite`)."""
    from eval.synth.tsv_suite import prepare_tsv_path, tsv_name, write_hrbench_tsv, write_mmbench_tsv

    path = prepare_tsv_path(out, tsv_name(args.bench_format, mmbench_split or ""), args.overwrite)
    start = time.perf_counter()
    with write_errors(out, "--out"):
        if args.bench_format == "mmbench":
            counts = write_mmbench_tsv(cfg.synth, path, mmbench_split)
        else:
            counts = write_hrbench_tsv(cfg.synth, path)
        write_run_record(out, cfg)
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {cfg.synth.n} SynthVStar questions ({parts}) as {path} in {time.perf_counter() - start:.1f} s",
          flush=True)
    return 0


def _with_flags(args: argparse.Namespace) -> list[str]:
    """Dotted overrides plus one ``synth.<field>=value`` per given flag; a conflict is an error."""
    overrides = list(args.overrides or [])
    given = {}
    for item in overrides:
        key, value = parse_override(item)
        given[key] = value
    for dest, field in FLAG_FIELDS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        key = f"synth.{field}"
        if key in given and given[key] != value:
            raise InputError(f"--{dest.replace('_', '-')} {value} conflicts with --{key}={given[key]}")
        overrides.append(f"{key}={value}")
    return overrides


# --------------------------------------------------------------------------- search
def _register_search(actions: argparse._SubParsersAction) -> None:
    s = actions.add_parser("search", help="every expansion strategy on a V*Bench folder, oracle localizer")
    s.add_argument("--bench", type=Path, metavar="DIR",
                   help="V*Bench-layout folder (direct_attributes/, relative_position/, ...); required without --big")
    s.add_argument("--n-targets", type=int, default=100, help="first N (sample, target) pairs, sorted")
    s.add_argument("--strategies", default=",".join(SEARCH_STRATEGIES),
                   help="comma-separated subset of " + ",".join(SEARCH_STRATEGIES))
    s.add_argument("--out", type=Path, metavar="JSON",
                   help="write the report here (+ config.yaml / run.json beside it)")
    s.add_argument("--big", action="store_true", help="peak-memory run on a generated 16384 px image instead")
    s.add_argument("--big-side", type=int, default=16384, metavar="PX")
    s.add_argument("--localizer", choices=("oracle", "vsm"), default="oracle",
                   help="--big: the localizer of the searched subprocess (vsm = the shipped search model)")
    add_config_args(s)
    s.set_defaults(func=run_search)


def run_search(args: argparse.Namespace) -> int:
    from eval.bench_search import run_bench_search, run_big, write_report
    from seal.config import SearchCommandConfig

    cfg = resolve_config(args, SearchCommandConfig, search_profile=False)  # the oracle: no model's profile
    if args.out is not None:
        writable_dir(args.out.parent, "--out")  # before the searches, not after them
    if args.big:
        passthrough = [f"--config={c}" for c in args.config] + [f"--{o}" for o in args.overrides] + \
            ["--localizer", args.localizer]
        report = run_big(args.big_side, passthrough)
    else:
        if args.bench is None:
            raise InputError("--bench DIR is required (or --big)")
        report = run_bench_search(cfg, args.bench, args.n_targets, _strategies(args.strategies))
    if args.out is not None:
        with write_errors(args.out.parent, "--out"):
            write_report(args.out, report)
            write_run_record(args.out.parent, cfg)
        print(f"report written to {args.out}")
    return 0


def _strategies(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


# --------------------------------------------------------------------------- vsm
def _register_vsm(actions: argparse._SubParsersAction) -> None:
    s = actions.add_parser("vsm", help="the search model: targets found, nodes vs breadth-first, calibration, speed")
    s.add_argument("--model", metavar="DIR",
                   help="search model checkpoint (sets models.vsm_path; default checkpoints/vsm_tiny); its "
                        "manifest's search defaults sit under --config and --search.*")
    s.add_argument("--bench", type=Path, default=Path("runs/synth_test_vsm"), metavar="DIR",
                   help="TEST-split V*Bench-layout folder (generated here when it holds no benchmark)")
    s.add_argument("--n-samples", type=int, default=80, help="samples to generate when --bench is empty")
    s.add_argument("--n-targets", type=int, default=100, help="first N (sample, target) pairs, sorted")
    s.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    s.add_argument("--out", type=Path, metavar="JSON",
                   help="report JSON (default: runs/bench_vsm/<model folder name>.json; never the "
                        "checkpoint's own metrics.json)")
    s.add_argument("--timing-calls", type=int, default=20, help="locate calls timed on 4 new patches")
    s.add_argument("--strategies", default=",".join(VSM_STRATEGIES),
                   help="comma-separated among vstar,bfs (a quick run: vstar; the node ratio needs both)")
    s.add_argument("--no-patch-calibration", action="store_true",
                   help="skip locating every tree node for the patch calibration (its ECE is then nan)")
    s.add_argument("--hit-check-model", metavar="DIR",
                   help="a VQA LLM that also reads the confident boxes' words, as in seal search (sets "
                        "hit_check.vqa_path and hit_check.vqa=always); --hit_check.enabled=false: the "
                        "search model alone")
    add_config_args(s)
    s.set_defaults(func=run_vsm)


def run_vsm(args: argparse.Namespace) -> int:
    import torch

    from eval.bench_vsm import check_strategies, ensure_targets, run_bench_vsm
    from seal.cli.cmd_search import LOCALIZERS, load_hit_check
    from seal.config import SearchCommandConfig

    args.overrides = list(args.overrides or []) + ["models.localizer=vsm"]
    if args.model:
        args.overrides.append(f"models.vsm_path={args.model}")
    if args.hit_check_model:
        args.overrides += [f"hit_check.vqa_path={args.hit_check_model}", "hit_check.vqa=always"]
    cfg = resolve_config(args, SearchCommandConfig)  # over the search model's profile
    strategies = check_strategies(_strategies(args.strategies))
    out = args.out or Path("runs/bench_vsm") / f"{Path(cfg.models.vsm_path).name}.json"
    writable_dir(out.parent, "--out")
    torch.set_num_threads(args.threads)
    targets = ensure_targets(args.bench, args.n_samples, args.n_targets)  # before the models load
    localizer = LOCALIZERS["vsm"](args, cfg)
    with write_errors(out.parent, "--out"):
        run_bench_vsm(cfg, localizer, load_hit_check(cfg, localizer), targets, out, bench=args.bench,
                      timing_calls=args.timing_calls, strategies=strategies,
                      patch_calibration=not args.no_patch_calibration, threads=args.threads)
    return 0


# --------------------------------------------------------------------------- vqa
def _register_vqa(actions: argparse._SubParsersAction) -> None:
    s = actions.add_parser("vqa", help="the VQA LLM with ground-truth crops and on the global view")
    s.add_argument("--model", type=Path, default=Path("checkpoints/vqa_tiny"), metavar="DIR",
                   help="VQA checkpoint directory")
    s.add_argument("--data", type=Path, default=Path("runs/synth_test_mixed"), metavar="DIR",
                   help="mixed-suite test benchmark (generated if missing)")
    s.add_argument("--n", type=int, default=300, help="samples to generate when --data is missing")
    s.add_argument("--seed", type=int, default=0, help="benchmark seed when generating")
    s.add_argument("--limit", type=int, help="evaluate only the first LIMIT samples")
    s.add_argument("--out", type=Path, metavar="JSON",
                   help="report JSON (default: runs/bench_vqa/<model folder name>.json)")
    s.add_argument("--threads", type=int, default=2, help="torch threads")
    s.set_defaults(func=run_vqa)


def run_vqa(args: argparse.Namespace) -> int:
    import torch

    from eval.bench_vqa import run_bench_vqa
    from seal.core.paths import find_dir

    if args.overrides:
        raise InputError(f"seal bench vqa takes no config overrides, found --{args.overrides[0]}")
    model = find_dir(args.model)
    if model is None:
        raise InputError("--model: expected a VQA checkpoint directory, found none", args.model)
    out = args.out or Path("runs/bench_vqa") / f"{args.model.name}.json"
    writable_dir(out.parent, "--out")
    torch.set_num_threads(args.threads)
    with write_errors(out.parent, "--out"):
        run_bench_vqa(model, args.data, out, n=args.n, seed=args.seed, limit=args.limit)
    return 0


# --------------------------------------------------------------------------- answer-cost
def _register_answer_cost(actions: argparse._SubParsersAction) -> None:
    s = actions.add_parser("answer-cost", help="accuracy, tokens, FLOPs and wall time of the answering forward "
                                               "under each vision-token cut")
    s.add_argument("--model", type=Path, default=Path("checkpoints/vqa_tiny"), metavar="DIR",
                   help="VQA checkpoint directory")
    s.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="SynthVStar benchmark folder (seal bench synth; ground-truth crops are used)")
    s.add_argument("--cuts", help="comma-separated MODE:RATIO (entropy: entropy:ALPHA; none alone); default: "
                                  "none and every mode at 0.5 and 0.25 (merger+pruners at 0.5)")
    s.add_argument("--merger", default="checkpoints/merger_tiny", metavar="DIR", help="trained token merger")
    s.add_argument("--pruners", default="checkpoints/pruners_tiny", metavar="DIR", help="trained layer pruners")
    s.add_argument("--repeats", type=int, default=5, help="timed calls per question and cut (after a warm-up)")
    s.add_argument("--limit", type=int, help="only the first LIMIT questions")
    s.add_argument("--threads", type=int, default=1, help="torch threads")
    s.add_argument("--out", type=Path, required=True, metavar="JSON", help="report JSON")
    s.set_defaults(func=run_answer_cost)


def run_answer_cost(args: argparse.Namespace) -> int:
    import torch

    from eval.answer_cost import DEFAULT_CUTS, bench_answer_cost, parse_cuts

    if args.overrides:
        raise InputError(f"seal bench answer-cost takes no config overrides, found --{args.overrides[0]}")
    if args.repeats < 0:
        raise InputError(f"--repeats: expected >= 0, found {args.repeats}")
    cuts = parse_cuts(args.cuts or DEFAULT_CUTS)
    writable_dir(args.out.parent, "--out")
    torch.set_num_threads(args.threads)
    with write_errors(args.out.parent, "--out"):
        bench_answer_cost(args.model, args.data, args.out, cuts, args.repeats, args.limit, args.merger, args.pruners)
    return 0
