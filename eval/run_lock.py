"""One ``seal eval`` run at a time per output folder: an OS lock on ``OUT/eval.lock`` plus a record of its holder.

Two runs appending answers to the same ``predictions.jsonl`` would both answer every question and
the next run would count the duplicates (a narrower, wrong interval). The lock is
``fcntl.flock`` (exclusive, non-blocking) on ``OUT/eval.lock``; the file also holds a one-line JSON
record of the holder (``pid``, ``host``, ``started``, ``command``) so that a refused run can say who
holds the folder. The OS releases the lock when the holder dies, however it dies: a record left by a
killed run (``kill -9``) is found under a free lock, and the next run takes it over with a note on
stderr. The file itself is never deleted (deleting a lock file races with a run that has just opened it).

Bottom of ``eval``: imports nothing of ours but :mod:`seal.core.errors`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import TextIO

from seal.core.errors import InputError

LOCK_FILE = "eval.lock"


class RunLock:
    """Exclusive hold on an evaluation output folder, as a context manager.

    Example::

        with RunLock(out):  # InputError (one line, exit 2) when another run holds ``out``
            ...  # answer, merge, write results

    Args:
        out_dir: the output folder (must exist).
        note: where the take-over note of a stale lock goes (default stderr).
    """

    def __init__(self, out_dir: str | Path, note: TextIO | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self._note = note
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this process's record; raises :class:`InputError` when it is held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_record(fd))
            os.close(fd)
            raise InputError(f"another seal eval run is writing into this output folder ({holder}); "
                             f"wait for it to finish or choose another --output-dir", self.out_dir) from None
        except OSError as exc:
            os.close(fd)
            raise InputError(f"cannot lock {LOCK_FILE} (file locks unsupported here? {exc.strerror})",
                             self.path) from None
        previous = _read_record(fd)
        if previous:  # a record under a free lock: its holder died without releasing it
            gone = "gone" if not _alive(previous) else "no longer holding the lock"
            print(f"seal eval: note: {self.out_dir}: taking over a stale lock of a run that is {gone} "
                  f"({_describe(previous)})", file=self._note or sys.stderr, flush=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Clear the record and drop the lock (an empty record = nobody holds the folder)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_record(fd: int) -> dict | None:
    """The holder record in the lock file; None when empty; ``{"unreadable": text}`` when malformed."""
    text = os.pread(fd, 65536, 0).decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
        return record if isinstance(record, dict) else {"unreadable": text[:80]}
    except ValueError:
        return {"unreadable": text[:80]}


def _describe(record: dict | None) -> str:
    if not record:
        return "holder unknown: empty lock record"
    if "unreadable" in record:
        return f"holder unknown: lock record {record['unreadable']!r}"
    return f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}"


def _alive(record: dict) -> bool:
    """Whether the recorded pid runs on this host (a pid on another host cannot be checked: False)."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
