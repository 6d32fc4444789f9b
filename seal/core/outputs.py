"""Output folders checked before the work and guarded while it writes: one :class:`InputError` each.

- :func:`writable_dir`: create the folder and write + delete a probe file in it, so a read-only
  folder, a file in its place, a file among its parents or a full disk fail before any model loads
  or any question is answered.
- :func:`write_errors`: around the writing itself, an ``OSError`` (disk full, quota, a folder made
  read-only meanwhile, ...) becomes one line naming the path it hit.

Bottom layer: imports nothing else of ours but :mod:`seal.core.errors`.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seal.core.errors import InputError

DISK_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EFBIG,
                                    errno.EACCES, errno.EPERM, errno.EIO) if e is not None)
"""Errors of writing itself (not of a path the user named): they carry no file name in Python."""


def writable_dir(path: str | Path, what: str) -> Path:
    """``path`` as a directory that exists and takes a file (created with its parents; a probe file
    is written and deleted in it).

    Args:
        path: the output folder.
        what: how the user named it (``--trace-dir``, ``train.out_dir``), for the message.

    Raises:
        InputError: ``path`` is a file or lies under one, cannot be created, or cannot be written
            (read-only, no permission, disk full); the message names the path.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"expected a directory for {what}, found an existing file", p)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot create the {what} directory: {parent} is a file", p)
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the {what} directory ({_reason(exc)})", p) from None
    probe = p / f".seal-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"seal write probe\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        _remove(probe)
        raise InputError(f"expected a writable {what} directory, cannot write in it ({_reason(exc)})", p) from None
    _remove(probe)
    return p


@contextmanager
def write_errors(path: str | Path, what: str) -> Iterator[None]:
    """Inside: writing into the output folder ``path``. An ``OSError`` about a file under ``path``, or
    of writing itself (:data:`DISK_ERRNOS`: disk full, quota, read-only, permission), becomes an
    :class:`InputError` naming the file (``path`` when the error names none); others pass through."""
    root = Path(path)
    try:
        yield
    except OSError as exc:
        target = Path(exc.filename) if exc.filename else None
        inside = target is not None and _is_under(target, root)
        if not inside and exc.errno not in DISK_ERRNOS:
            raise
        raise InputError(f"cannot write into {what} ({_reason(exc)})", target if inside else root) from None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc) or type(exc).__name__


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
