"""Streaming reader for VLMEvalKit-style TSV benchmark files (MMBench, HR-Bench, VStarBench.tsv).

The files are tab-separated with a header line; VLMEvalKit writes them with pandas, fields quoted
(``"`` with doubled inner quotes) or not. One column usually holds a base64 image, so a single field
can be megabytes long and a file can be several gigabytes: rows are read one at a time from the
file (never the whole file), columns are looked up by name, and the stdlib ``csv`` field limit
(131072 bytes by default) is raised once, process-wide, by :func:`raise_field_size_limit`.

Each row remembers the byte offset where it starts, so a caller can keep only the small text
columns while streaming and re-read one row (its image) later with :meth:`TsvReader.read_row_at`.

Every malformed input (missing file, missing column, wrong field count, bad quoting, non-UTF-8
bytes, a non-integer where an integer is expected) raises :class:`~seal.core.errors.InputError` naming
the file and, for rows, the 1-based line number where the row starts.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from seal.core.errors import InputError

MISSING_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
"""Field values pandas reads as NaN by default. VLMEvalKit reads these TSVs with pandas, so an option,
hint or answer spelled like this is "absent" there; we treat it the same way to score comparably."""


def is_missing(value: str | None) -> bool:
    """True for an absent column or a value pandas would read as NaN (see :data:`MISSING_VALUES`)."""
    return value is None or value.strip() in MISSING_VALUES


def raise_field_size_limit() -> None:
    """Let ``csv`` read fields of any size (base64 images are far above the 131072-byte default)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # platforms where a C long is 32 bits
            limit //= 2


class _Dialect(csv.Dialect):
    delimiter = "\t"
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True  # an unterminated quoted field (a truncated file) is an error, not a short row


@dataclass(frozen=True)
class TsvRow:
    """One data row: ``values`` maps column name -> raw field text (``""`` for an empty field).

    ``line`` is the 1-based line where the row starts (the header is line 1); ``offset`` is its byte
    offset in the file, for :meth:`TsvReader.read_row_at`.
    """

    path: Path
    line: int
    offset: int
    values: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def get(self, column: str) -> str | None:
        """The raw field, or None when the file has no such column."""
        return self.values.get(column)

    def text(self, column: str) -> str | None:
        """The field, or None when the column is absent or the value is missing (NaN-like)."""
        value = self.values.get(column)
        return None if is_missing(value) else value

    def required_text(self, column: str) -> str:
        """The field, which must be present and non-empty."""
        value = self.text(column)
        if value is None:
            raise self.error(f"column {column!r}: expected a value, found {self.values.get(column)!r}")
        return value

    def integer(self, column: str) -> int:
        """The field as an int (``"12"`` or ``"12.0"``, as pandas may write integer columns)."""
        raw = self.values.get(column, "")
        text = raw.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number.is_integer():
            return int(number)
        raise self.error(f"column {column!r}: expected an integer, found {_clip(raw)!r}")

    def error(self, message: str) -> InputError:
        """An :class:`InputError` naming this row's file and line."""
        return InputError(f"line {self.line}: {message}", self.path)


class TsvReader:
    """A tab-separated file with a header line, read row by row.

    Args:
        path: the ``.tsv`` file (UTF-8, optional BOM).
        required: column names that must be in the header.

    The header is read (and checked) on construction; iterating opens the file again and yields one
    :class:`TsvRow` per non-blank record, holding at most one row in memory.

    Raises:
        InputError: missing/empty file, bad header, missing required columns (all named).
    """

    def __init__(self, path: str | Path, required: Sequence[str] = ()) -> None:
        raise_field_size_limit()
        self.path = Path(path)
        if not self.path.exists():
            raise InputError("no such file", self.path)
        if not self.path.is_file():
            raise InputError("expected a TSV file, found a directory", self.path)
        self.columns, self._data_offset, self._data_line = self._read_header()
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise InputError(f"missing required column(s) {', '.join(repr(c) for c in missing)}; "
                             f"the header has {_clip(', '.join(self.columns), 300)}", self.path)

    def has(self, column: str) -> bool:
        return column in self.columns

    def __iter__(self) -> Iterator[TsvRow]:
        with self.path.open("rb") as f:
            f.seek(self._data_offset)
            yield from self._records(f, self._data_offset, self._data_line)

    def read_row_at(self, offset: int, line: int = 0) -> TsvRow:
        """Re-read the one row that starts at byte ``offset`` (``line`` is only used in messages)."""
        with self.path.open("rb") as f:
            f.seek(offset)
            for row in self._records(f, offset, max(line - 1, 0)):
                return row
        raise InputError(f"line {line}: no row at byte offset {offset} (was the file changed?)", self.path)

    # ------------------------------------------------------------------ internals
    def _read_header(self) -> tuple[list[str], int, int]:
        with self.path.open("rb") as f:
            source = _Lines(f, self.path, 0, 0)
            reader = csv.reader(source, _Dialect)
            while True:
                try:
                    header = next(reader)
                except StopIteration:
                    raise InputError("empty file, expected a tab-separated header line", self.path) from None
                except csv.Error as exc:
                    raise InputError(f"line {source.line}: malformed header ({exc})", self.path) from None
                if header:
                    break
        columns = [c.strip() for c in header]
        if any(not c for c in columns):
            raise InputError(f"line {source.line}: the header has an empty column name", self.path)
        duplicates = sorted({c for c in columns if columns.count(c) > 1})
        if duplicates:
            raise InputError(f"line {source.line}: duplicated column(s) {duplicates} in the header", self.path)
        return columns, source.pos, source.line

    def _records(self, f: BinaryIO, offset: int, line: int) -> Iterator[TsvRow]:
        source = _Lines(f, self.path, offset, line)
        reader = csv.reader(source, _Dialect)
        n = len(self.columns)
        while True:
            start, start_line = source.pos, source.line + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"line {start_line}: malformed TSV row ({exc}); is the file truncated?",
                                 self.path) from None
            if not fields:
                continue  # blank line
            if len(fields) != n:
                raise InputError(f"line {start_line}: expected {n} tab-separated fields "
                                 f"({_clip(', '.join(self.columns), 200)}), found {len(fields)}", self.path)
            yield TsvRow(self.path, start_line, start, dict(zip(self.columns, fields)))


class _Lines:
    """Decoded lines of a binary file, counting lines and bytes consumed (for offsets and messages)."""

    def __init__(self, f: BinaryIO, path: Path, pos: int, line: int) -> None:
        self.f, self.path, self.pos, self.line = f, path, pos, line

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = self.f.readline()
        if not raw:
            raise StopIteration
        self.pos += len(raw)
        self.line += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"line {self.line}: not valid UTF-8 ({exc.reason} at byte {exc.start})",
                             self.path) from None
        if self.pos == len(raw) and text.startswith("\ufeff"):
            text = text[1:]  # byte-order mark at the very start of the file
        return text


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
