"""Run records: every run writes its resolved config and the git revision beside its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from seal.core.config import dump_yaml
from seal.core.paths import PROJECT_ROOT

_COMMAND_LINE: list[str] = []


def set_command_line(argv: list[str]) -> None:
    """Remember the ``seal ...`` command being run, for run records (set by the CLI's ``main``)."""
    _COMMAND_LINE[:] = list(argv)


def command_line() -> list[str]:
    """The command being run: the one the CLI set, else ``sys.argv``."""
    return list(_COMMAND_LINE or sys.argv)


def git_revision() -> str:
    """The project's git revision (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        rev = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_record(out_dir: str | Path, cfg: Any, command: list[str] | None = None) -> None:
    """Write ``config.yaml`` (the resolved config dataclass) and ``run.json`` (git revision,
    command) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(cfg), encoding="utf-8")
    record = {"git_revision": git_revision(), "command": command if command is not None else command_line()}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
