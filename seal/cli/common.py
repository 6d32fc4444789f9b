"""Helpers shared by the sub-commands: config options, run records, JSON output."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from seal.config import Config, dump_yaml, load


_COMMAND_LINE: list[str] = []


def set_command_line(argv: list[str]) -> None:
    """Remember the ``seal ...`` command being run, for run records (set by ``main``)."""
    _COMMAND_LINE[:] = list(argv)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (repeatable, later files win); dotted overrides are collected by main."""
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="config file; repeat to layer (later wins). Override fields with --section.field=value")


def resolve_config(args: argparse.Namespace, search_profile: bool | str | Path = True) -> Config:
    """``args.config`` files and ``args.overrides`` over the search model's profile
    (:func:`seal.config.load`; ``search_profile``: that model's directory, True = ``agent.vsm_path``'s)."""
    return load(getattr(args, "config", []) or [], getattr(args, "overrides", []) or [], search_profile)


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None,
                      model_arg: str | None = None, profile: bool = True) -> tuple[argparse.Namespace, Config]:
    """``(args, config)`` of a script with :func:`add_config_args`: unknown ``--section.field=value``
    arguments become ``args.overrides``, layered over ``args.config``, over the search profile of the
    model the argument ``model_arg`` names (None: ``agent.vsm_path``'s; see :func:`seal.config.load`);
    ``profile=False``: none (a script that searches with another localizer).

    Raises:
        ConfigError: a config file or an override is invalid.
    """
    from seal.cli.main import dotted_overrides

    args, extra = parser.parse_known_args(argv)
    args.overrides = dotted_overrides(extra, parser)
    if profile and model_arg is not None and getattr(args, model_arg) is not None:
        return args, resolve_config(args, getattr(args, model_arg))
    return args, resolve_config(args, profile)


def git_revision() -> str:
    """The project's git revision (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_record(out_dir: str | Path, cfg: Config, command: list[str] | None = None) -> None:
    """Write ``config.yaml`` (resolved) and ``run.json`` (git revision, command) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    record = {"git_revision": git_revision(), "command": command if command is not None else (_COMMAND_LINE or sys.argv)}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def print_json_line(obj: Any) -> None:
    """The machine-readable result: one JSON object as the last stdout line."""
    print(json.dumps(obj, separators=(",", ":"), default=_json_default), flush=True)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
