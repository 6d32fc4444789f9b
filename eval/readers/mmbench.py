"""MMBench reader (VLMEvalKit TSVs such as ``MMBench_DEV_EN.tsv``), with CircularEval groups.

Columns are read by name: ``index, question, image, category, A, B`` are required; ``hint``,
``C``, ``D``, ... (more option letters), ``answer`` (absent in TEST files), ``l2-category``,
``source``, ``split``, ``comment`` and ``g_index`` are optional. Missing values are the strings
pandas reads as NaN (see :data:`eval.readers.tsv.MISSING_VALUES`).

- ``image`` is base64 of the encoded image, or (64 characters or fewer) the ``index`` of another
  row whose image this row reuses; references are resolved (chains followed) after the pass and a
  reference to a missing row is an error. Images are decoded lazily: :meth:`MMBenchDataset.image_bytes`
  re-reads the one row that holds the data, so memory never holds the base64 of every row.
- CircularEval: a question with N options appears N times, copy k with ``index = g + k * 1e6`` and
  rotated options. ``g_index`` is the column when present, else ``index % 1_000_000``; rows sharing
  a ``g_index`` form one :class:`MMBenchQuestion` whose main row has ``index == g_index``.
- Options must be a prefix ``A, B, ...`` of the option columns (a gap is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from PIL import Image

from eval.readers.images import decode_base64, image_from_bytes, looks_like_base64
from eval.readers.tsv import TsvReader, TsvRow
from seal.core.errors import InputError
from seal.core.image_io import DEFAULT_MAX_PIXELS

REQUIRED_COLUMNS = ("index", "question", "image", "category", "A", "B")
CIRCULAR_OFFSET = 1_000_000
"""Copy k of question g has ``index = g + k * CIRCULAR_OFFSET``."""
REFERENCE_MAX_CHARS = 64
"""An ``image`` field this short is the ``index`` of the row holding the image, not base64."""
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class MMBenchRow:
    """One TSV row (one pass of a question). ``options`` are the texts of ``A, B, ...`` in order;
    ``answer`` is a letter or None (TEST split); ``image_index`` is the ``index`` of the row whose
    ``image`` field holds this row's base64 (itself unless the field was a reference)."""

    index: int
    g_index: int
    question: str
    hint: str | None
    options: tuple[str, ...]
    answer: str | None
    category: str
    l2_category: str | None
    split: str | None
    source: str | None
    image_index: int
    line: int

    @property
    def letters(self) -> str:
        return OPTION_LETTERS[: len(self.options)]

    @property
    def answer_index(self) -> int | None:
        return None if self.answer is None else self.letters.index(self.answer)

    @property
    def is_main(self) -> bool:
        """The original (pass 0) row of its question."""
        return self.index == self.g_index


@dataclass(frozen=True)
class MMBenchQuestion:
    """The rows of one question (CircularEval passes), main row first, then by ``index``."""

    g_index: int
    rows: tuple[MMBenchRow, ...]

    @property
    def main(self) -> MMBenchRow:
        return self.rows[0]

    @property
    def category(self) -> str:
        return self.main.category


class MMBenchDataset:
    """A whole MMBench TSV, streamed once; rows keep their text columns, images stay on disk.

    Args:
        path: the ``.tsv`` file.

    Raises:
        InputError: missing file/columns, malformed rows, a non-integer ``index``/``g_index``,
            duplicated ``index``, options not a prefix, an ``answer`` that is not an option letter,
            empty or truncated image data, unresolvable image references, a circular copy
            without its main row. Each names the file (and line).
    """

    def __init__(self, path: str | Path) -> None:
        self.reader = TsvReader(path, REQUIRED_COLUMNS)
        self.path = self.reader.path
        self.has_answers = self.reader.has("answer")
        self.option_columns = _option_columns(self.reader.columns)
        self.rows: list[MMBenchRow] = []
        self._image_rows: dict[int, tuple[int, int]] = {}  # index -> (byte offset, line) of rows with base64
        refs: dict[int, tuple[int, int]] = {}  # index -> (referenced index, line)
        by_index: dict[int, int] = {}
        for row in self.reader:
            index = row.integer("index")
            if index in by_index:
                raise row.error(f"column 'index': {index} already used on line {by_index[index]}")
            by_index[index] = row.line
            image = row.get("image") or ""
            if len(image.strip()) <= REFERENCE_MAX_CHARS:
                refs[index] = (_reference(row, image), row.line)
            elif not looks_like_base64(image):
                raise row.error(f"column 'image': base64 data of {len(image)} chars is not a multiple of 4 "
                                "(truncated or corrupt)")
            else:
                self._image_rows[index] = (row.offset, row.line)
            self.rows.append(self._parse(row, index))
        if not self.rows:
            raise InputError("no data rows after the header", self.path)
        resolved = {i: self._resolve(i, refs) for i in refs}
        self.rows = [r if r.index not in resolved else _replace_image(r, resolved[r.index]) for r in self.rows]
        self._by_index = {r.index: r for r in self.rows}
        self._questions = _group(self.rows, self.path)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[MMBenchRow]:
        return iter(self.rows)

    def row(self, index: int) -> MMBenchRow:
        try:
            return self._by_index[index]
        except KeyError:
            raise InputError(f"no row with index {index}", self.path) from None

    def questions(self) -> list[MMBenchQuestion]:
        """One entry per question (``g_index``), in the file order of their main rows."""
        return list(self._questions)

    def image_location(self, index: int) -> tuple[int, int]:
        """``(byte offset, line)`` of the row whose ``image`` field holds row ``index``'s base64."""
        return self._image_rows[self.row(index).image_index]

    def image_bytes(self, index: int) -> bytes:
        """The encoded image (JPEG/PNG/... bytes) of row ``index``, re-read from the file."""
        source = self.row(index).image_index
        offset, line = self._image_rows[source]
        row = self.reader.read_row_at(offset, line)
        return decode_base64(row["image"], self.path, f"line {line}: column 'image'")

    def image(self, index: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Row ``index``'s image as an upright ``RGB`` ``uint8`` PIL image."""
        line = self._image_rows[self.row(index).image_index][1]
        return image_from_bytes(self.image_bytes(index), self.path, f"line {line}: column 'image'", max_pixels)

    # ------------------------------------------------------------------ internals
    def _parse(self, row: TsvRow, index: int) -> MMBenchRow:
        g_index = row.integer("g_index") if self.reader.has("g_index") else index % CIRCULAR_OFFSET
        options = _options(row, self.option_columns)
        answer = row.text("answer") if self.has_answers else None
        if answer is not None:
            answer = answer.strip().upper()
            if answer not in OPTION_LETTERS[: len(options)]:
                raise row.error(f"column 'answer': expected one of {list(OPTION_LETTERS[: len(options)])}, "
                                f"found {row['answer']!r}")
        return MMBenchRow(
            index=index, g_index=g_index, question=row.required_text("question"), hint=row.text("hint"),
            options=options, answer=answer, category=row.required_text("category"),
            l2_category=row.text("l2-category"), split=row.text("split"), source=row.text("source"),
            image_index=index, line=row.line)

    def _resolve(self, index: int, refs: dict[int, tuple[int, int]]) -> int:
        seen = [index]
        target, line = refs[index]
        while target in refs:
            if target in seen:
                chain = " -> ".join(str(i) for i in [*seen, target])
                raise InputError(f"line {line}: column 'image': circular image references {chain}", self.path)
            seen.append(target)
            target = refs[target][0]
        if target not in self._image_rows:
            raise InputError(f"line {line}: column 'image': refers to row index {target}, which is not in the file",
                             self.path)
        return target


def read_mmbench(path: str | Path) -> MMBenchDataset:
    """Read (stream, validate, group) an MMBench TSV; see :class:`MMBenchDataset`."""
    return MMBenchDataset(path)


def _option_columns(columns: list[str]) -> list[str]:
    """``A, B, ...``: the single-letter columns, which must themselves be a prefix of the alphabet."""
    letters = [c for c in OPTION_LETTERS if c in columns]
    return letters[: next((i for i, c in enumerate(letters) if c != OPTION_LETTERS[i]), len(letters))]


def _options(row: TsvRow, columns: list[str]) -> tuple[str, ...]:
    values = [row.text(c) for c in columns]
    n = next((i for i, v in enumerate(values) if v is None), len(values))
    if n < 2:
        raise row.error(f"expected at least 2 options (columns A, B), found {n}")
    if any(v is not None for v in values[n:]):
        present = [c for c, v in zip(columns, values) if v is not None]
        raise row.error(f"options must fill a prefix A, B, ... of the option columns; found {present}")
    return tuple(values[:n])  # type: ignore[arg-type]


def _reference(row: TsvRow, image: str) -> int:
    text = image.strip()
    if not text:
        raise row.error("column 'image': empty, expected base64 image data or the index of another row")
    try:
        return int(float(text)) if float(text).is_integer() else int(text)
    except ValueError:
        raise row.error(f"column 'image': {text!r} is neither base64 image data nor the index of another row") from None


def _replace_image(row: MMBenchRow, image_index: int) -> MMBenchRow:
    return replace(row, image_index=image_index)


def _group(rows: list[MMBenchRow], path: Path) -> list[MMBenchQuestion]:
    groups: dict[int, list[MMBenchRow]] = {}
    for row in rows:
        groups.setdefault(row.g_index, []).append(row)
    questions = []
    for g, members in groups.items():
        main = [r for r in members if r.is_main]
        if not main:
            first = min(members, key=lambda r: r.line)
            raise InputError(f"line {first.line}: row index {first.index} is a circular copy of question "
                             f"{g}, but no row has index {g}", path)
        copies = sorted((r for r in members if not r.is_main), key=lambda r: r.index)
        questions.append(MMBenchQuestion(g, (main[0], *copies)))
    questions.sort(key=lambda q: q.main.line)
    return questions
