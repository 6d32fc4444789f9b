"""HR-Bench 4K / 8K reader (``hr_bench_4k.tsv``, ``hr_bench_8k.tsv``: 1.9 / 4.6 GB), streamed.

Columns, read by name (sources disagree on their order): ``index, question, answer, category,
A, B, C, D, cycle_category, image``. ``category`` is ``single`` (FSP) or ``cross`` (FCP);
``image`` is base64. Each question appears in 4 rows ("cycles", ``cycle_category`` 0..3; in cycle
k the correct option sits at letter ``"ABCD"[k]`` and the distractors are re-ordered), all on the
same image.

Rows are grouped into questions by ``(question text, digest of the image field)``, computed while
streaming: the row ``index`` pattern (``4q + k``) is only inferred for the public files, while a
question and its image are what the cycles share by construction. Only the digest of each image
is kept; :meth:`HRBenchDataset.image_bytes` re-reads one row's image from the file when needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

from eval.readers.images import decode_base64, image_from_bytes, looks_like_base64
from eval.readers.tsv import TsvReader
from seal.core.errors import InputError
from seal.core.image_io import DEFAULT_MAX_PIXELS

REQUIRED_COLUMNS = ("index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image")
CATEGORIES = ("single", "cross")
LETTERS = "ABCD"
N_CYCLES = 4


@dataclass(frozen=True)
class HRBenchRow:
    """One TSV row. ``options`` are the texts of A-D; ``answer`` is a letter; ``cycle`` is 0..3;
    ``image_digest`` is a hex digest of the base64 field; ``line``/``offset`` locate the row."""

    index: int
    question: str
    options: tuple[str, str, str, str]
    answer: str
    category: str
    cycle: int
    image_digest: str
    line: int
    offset: int

    @property
    def question_key(self) -> tuple[str, str]:
        """What the 4 cycles of one question share: its (whitespace-normalised) text and image."""
        return " ".join(self.question.split()), self.image_digest

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)


@dataclass(frozen=True)
class HRBenchQuestion:
    """One question: its rows sorted by cycle (4 unless grouping was told to allow fewer)."""

    rows: tuple[HRBenchRow, ...]

    @property
    def question(self) -> str:
        return self.rows[0].question

    @property
    def category(self) -> str:
        return self.rows[0].category

    @property
    def cycles(self) -> tuple[int, ...]:
        return tuple(r.cycle for r in self.rows)


def iter_hrbench_rows(path: str | Path) -> Iterator[HRBenchRow]:
    """Stream and validate the rows of an HR-Bench TSV, one at a time (a generator).

    Raises:
        InputError: missing file/columns, malformed rows, non-integer ``index``/``cycle_category``,
            a cycle outside 0..3, a category other than single/cross, an empty option, an answer not
            in A-D, a duplicated ``index``, empty or truncated image data (naming file and line).
    """
    reader = TsvReader(path, REQUIRED_COLUMNS)
    seen: dict[int, int] = {}
    for row in reader:
        index = row.integer("index")
        if index in seen:
            raise row.error(f"column 'index': {index} already used on line {seen[index]}")
        seen[index] = row.line
        cycle = row.integer("cycle_category")
        if not 0 <= cycle < N_CYCLES:
            raise row.error(f"column 'cycle_category': expected 0..{N_CYCLES - 1}, found {cycle}")
        category = row.required_text("category").strip()
        if category not in CATEGORIES:
            raise row.error(f"column 'category': expected one of {list(CATEGORIES)}, found {category!r}")
        answer = row.required_text("answer").strip().upper()
        if answer not in LETTERS:
            raise row.error(f"column 'answer': expected one of {list(LETTERS)}, found {row['answer']!r}")
        image = row["image"]
        if not looks_like_base64(image):
            raise row.error(f"column 'image': expected base64 image data, found {len(image)} chars "
                            "(empty, truncated or corrupt)")
        yield HRBenchRow(
            index=index, question=row.required_text("question"),
            options=tuple(row.required_text(c) for c in LETTERS),  # type: ignore[arg-type]
            answer=answer, category=category, cycle=cycle,
            image_digest=_digest(image.strip()),
            line=row.line, offset=row.offset)
    if not seen:
        raise InputError("no data rows after the header", reader.path)


def _digest(text: str, chunk: int = 1 << 20) -> str:
    """Hex digest of a (large) string, hashed in chunks so no full-size byte copy is made."""
    h = hashlib.blake2b(digest_size=16)
    for start in range(0, len(text), chunk):
        h.update(text[start:start + chunk].encode("utf-8"))
    return h.hexdigest()


def group_questions(rows: Iterable[HRBenchRow], source: str | Path | None = None,
                    require_all_cycles: bool = True) -> list[HRBenchQuestion]:
    """Group rows into questions by :attr:`HRBenchRow.question_key`, in order of first appearance.

    Raises:
        InputError: a question with the same cycle twice, rows of one question in different
            categories, or (``require_all_cycles``) a question without all 4 cycles.
    """
    groups: dict[tuple[str, str], list[HRBenchRow]] = {}
    for row in rows:
        members = groups.setdefault(row.question_key, [])
        for other in members:
            if other.cycle == row.cycle:
                raise InputError(f"line {row.line}: cycle {row.cycle} of the question on line {members[0].line} "
                                 f"(same text and image) appears twice (also line {other.line})", source)
            if other.category != row.category:
                raise InputError(f"line {row.line}: category {row.category!r} differs from {other.category!r} "
                                 f"of the same question on line {other.line}", source)
        members.append(row)
    questions = [HRBenchQuestion(tuple(sorted(m, key=lambda r: r.cycle))) for m in groups.values()]
    if require_all_cycles:
        for q in questions:
            if len(q.rows) != N_CYCLES:
                lines = ", ".join(str(r.line) for r in q.rows)
                raise InputError(f"line {q.rows[0].line}: question {q.question[:60]!r} has cycles {list(q.cycles)} "
                                 f"(lines {lines}), expected all of 0..{N_CYCLES - 1} on the same image", source)
    return questions


class HRBenchDataset:
    """A whole HR-Bench TSV: rows (text columns + image digests) and questions, images left on disk."""

    def __init__(self, path: str | Path, require_all_cycles: bool = True) -> None:
        self.reader = TsvReader(path, REQUIRED_COLUMNS)
        self.path = self.reader.path
        self.rows = list(iter_hrbench_rows(self.path))
        self.questions = group_questions(self.rows, self.path, require_all_cycles)

    def __len__(self) -> int:
        return len(self.rows)

    def image_bytes(self, row: HRBenchRow) -> bytes:
        """The encoded image of ``row``, re-read from the file."""
        raw = self.reader.read_row_at(row.offset, row.line)["image"]
        return decode_base64(raw, self.path, f"line {row.line}: column 'image'")

    def image(self, row: HRBenchRow, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """``row``'s image as an upright ``RGB`` ``uint8`` PIL image."""
        return image_from_bytes(self.image_bytes(row), self.path, f"line {row.line}: column 'image'", max_pixels)


def read_hrbench(path: str | Path, require_all_cycles: bool = True) -> HRBenchDataset:
    """Read (stream, validate, group) an HR-Bench TSV; see :class:`HRBenchDataset`."""
    return HRBenchDataset(path, require_all_cycles)
