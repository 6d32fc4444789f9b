"""Where local model directories are found.

A relative path is looked up in the current directory first, then in the project root (so ``make
demo`` and an installed ``seal`` find ``checkpoints/`` alike); a path found in neither is an
:class:`~seal.core.errors.InputError` naming both places, never a silent default.
"""

from __future__ import annotations

from pathlib import Path

from seal.core.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The project checkout (``checkpoints/`` lives here)."""


def find_dir(path: str | Path) -> Path | None:
    """``path`` as an existing directory (the current directory, then the project root), or None."""
    p = Path(path)
    for c in ([p] if p.is_absolute() else [p, PROJECT_ROOT / p]):
        if c.is_dir():
            return c
    return None


def resolve_dir(path: str | Path, field: str) -> Path:
    """``path`` as an existing directory (relative: the current directory, then the project root).

    Raises:
        InputError: neither place holds the directory (the message names the config field).
    """
    found = find_dir(path)
    if found is not None:
        return found
    p = Path(path)
    where = " or ".join(str(c) for c in ([p] if p.is_absolute() else [p, PROJECT_ROOT / p]))
    raise InputError(f"{field}: no such model directory ({where}); train it or set --{field}=DIR")
