"""``seal eval``: run the agent over a benchmark and write predictions, results.csv and summary.json.

``seal eval --dataset synth|vstar|mmbench|hrbench --path DIR|FILE.tsv --output-dir OUT [--config YAML ...]
[--policy.baseline_name=NAME] [--limit N] [--protocol likelihood|letter] [--seed S] [--no-progress]
[--num-processes N]``

One run at a time writes into OUT (:mod:`eval.run_lock`: a second one exits 2 naming the holder).
``--num-processes N`` answers with N spawned workers, ``accelerate launch --num_processes N -m seal eval
...`` with N ranks; both merge into the same predictions.jsonl as one process (:mod:`eval.sharded`).

``mmbench`` / ``hrbench`` read a VLMEvalKit TSV (every row asked: rotations, cycles), score it as
VLMEvalKit does (CircularEval / per-cycle, in results.csv) and write VLMEvalKit's result files beside
ours (:mod:`eval.vlmevalkit`); an MMBench TEST file (no answers) gives the submission file only.

The policy (learned head or a baseline) and the models come from the config (``policy``, ``agent``
sections). Several runs may share OUT (one results.csv row each); re-running a run resumes it.
Progress (with ETA) goes to stderr; the run's results row is printed as the last stdout line.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from seal.cli.common import add_config_args, add_model_args, print_json_line, resolve_config
from seal.core.runs import git_revision, write_run_record
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors


def register(sub: argparse._SubParsersAction) -> None:
    from eval.runner import DATASETS

    p = sub.add_parser("eval", help="evaluate the agent (a policy or baseline) on a benchmark")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="benchmark reader")
    p.add_argument("--path", required=True, metavar="PATH",
                   help="benchmark folder (or test_questions.jsonl); mmbench / hrbench: the .tsv file")
    p.add_argument("--output-dir", required=True, metavar="OUT", help="results folder (shared by runs)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N questions")
    p.add_argument("--protocol", choices=("likelihood", "letter"),
                   help="likelihood: folder JSONs, option log-likelihood; letter: test_questions.jsonl, "
                        "option letters (sets agent.answer_protocol; default: agent.answer_protocol)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed, recorded in summary.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--num-processes", type=int, default=1, metavar="N",
                   help="answer with N spawned worker processes (one torch thread each), merged in question order; "
                        "under accelerate launch the ranks come from RANK / WORLD_SIZE instead")
    add_model_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eval.run_lock import RunLock
    from eval.runner import EvalRun, evaluate, load_samples
    from eval.tsv_samples import TSV_DATASETS
    from eval.vlmevalkit import report_run
    from eval.sharded import evaluate_rank, evaluate_spawned, merge_ranks, rank_from_env
    from seal.config import to_dict

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit: expected >= 1, found {args.limit}")
    if args.protocol:
        args.overrides = list(args.overrides or []) + [f"agent.answer_protocol={args.protocol}"]
    cfg = resolve_config(args)
    run_spec = EvalRun(dataset=args.dataset, path=Path(args.path), protocol=cfg.agent.answer_protocol,
                       config=to_dict(cfg), limit=args.limit, seed=args.seed,
                       annotate=cfg.models.localizer == "oracle", git_revision=git_revision())
    run_spec.lambda_cost  # the learned head's recorded lambda_cost: a malformed record fails now, not at the end
    samples = load_samples(run_spec)  # bad paths / files fail here, before any model loads
    out = writable_dir(args.output_dir, "--output-dir")  # so does a read-only / full / misplaced results folder
    rank = rank_from_env()
    if args.num_processes < 1 or (rank is not None and args.num_processes != 1):
        raise InputError(f"--num-processes: expected >= 1 (and 1 under accelerate launch, which sets the "
                         f"processes), found {args.num_processes}")
    progress = not args.no_progress
    # one run per folder, taken before any model loads; under accelerate rank 0 holds it for all ranks
    with write_errors(out, "--output-dir"), RunLock(out) if rank is None or rank.rank == 0 else nullcontext():
        if rank is None or rank.rank == 0:
            write_run_record(out, cfg)
        if rank is not None:
            row = evaluate_rank(_agent(cfg), samples, run_spec, out, rank, progress=progress)
            if row is None:
                return 0  # rank 0 reports
        elif args.num_processes > 1:
            row = evaluate_spawned(partial(_worker_agent, cfg), samples, run_spec, out, args.num_processes, progress)
        else:
            merge_ranks(out, run_spec.run_id, samples)  # answers a killed sharded run left in rank files
            row = evaluate(_agent(cfg), samples, run_spec, out, progress=progress)
    if args.dataset in TSV_DATASETS:  # VLMEvalKit files; CircularEval / per-cycle figures in the row
        with write_errors(out, "--output-dir"):
            row = report_run(run_spec, samples, out, row)
    print(f"{row['baseline_name']} on {args.dataset}: {_headline(row)}, avg_cost {row['avg_cost']:.1f} "
          f"vision tokens, actions no/coarse/full {row['action_rate_no']:.2f}/{row['action_rate_coarse']:.2f}/"
          f"{row['action_rate_full']:.2f}, n {row['n']} -> {out}", flush=True)
    print_json_line(row)
    return 0


def _headline(row: dict) -> str:
    """Accuracy with its interval, plus the benchmark's own figure (CircularEval, per-cycle mean) if any."""
    if row.get("accuracy") is None:
        return f"no answers in the file, submission file {row.get('submission')}"
    text = f"accuracy {row['accuracy']:.3f} [{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}]"
    if "circular_accuracy" in row:
        text += f", CircularEval {row['circular_accuracy']:.3f} over {row['circular_n']} questions"
    if "cycle_mean_accuracy" in row:
        text += f", per-cycle mean {row['cycle_mean_accuracy']:.3f}"
    return text


def _agent(cfg):
    from seal.agent.pipeline import Agent

    return Agent.from_config(cfg)


def _worker_agent(cfg):
    """The agent of a ``--num-processes`` worker (spawned: it did not start in ``main``)."""
    from seal.cli.main import quiet_library_warnings

    quiet_library_warnings()
    return _agent(cfg)
