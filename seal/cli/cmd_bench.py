"""``seal bench``: benchmark tools. ``seal bench synth`` writes a SynthVStar benchmark.

``seal bench synth --out DIR [--n N] [--seed S] [--split train|val|test] [--suite vstar|mixed]
[--long-side PX] [--overwrite] [--config YAML ...] [--synth.field=value ...]``

The flags set fields of the ``synth`` config section (over the config files); a flag and a dotted
override of the same field must agree. ``DIR`` gets the V*Bench-layout folders (see
:mod:`eval.synth.generate`) plus ``config.yaml`` and ``run.json``; one summary line is printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from seal.cli.common import add_config_args, resolve_config
from seal.core.runs import write_run_record
from seal.core.config import parse_override
from seal.core.errors import InputError

FLAG_FIELDS = {"n": "n", "seed": "seed", "split": "split", "suite": "suite", "long_side": "long_side"}
"""argparse dest -> ``synth`` field it sets."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark tools (bench synth: generate a SynthVStar benchmark)")
    actions = p.add_subparsers(dest="bench_command", metavar="ACTION")
    actions.required = True
    s = actions.add_parser("synth", help="write a synthetic V*Bench-format benchmark (SynthVStar)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must not hold a benchmark)")
    s.add_argument("--n", type=int, help="number of questions (synth.n)")
    s.add_argument("--seed", type=int, help="base seed (synth.seed)")
    s.add_argument("--split", choices=("train", "val", "test"), help="split; splits never share a scene (synth.split)")
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

    args.overrides = _with_flags(args)
    cfg = resolve_config(args, BenchSynthConfig, search_profile=False)
    out = Path(args.out)
    prepare_output_dir(out, args.overwrite)  # fail on a bad --out before any work
    start = time.perf_counter()
    counts = generate_benchmark(cfg.synth, out, overwrite=True)
    write_run_record(out, cfg)
    parts = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"wrote {cfg.synth.n} SynthVStar {cfg.synth.split} samples ({parts}) to {out} "
          f"in {time.perf_counter() - start:.1f} s", flush=True)
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
