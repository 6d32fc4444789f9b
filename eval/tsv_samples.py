"""MMBench / HR-Bench TSV rows as the runner's samples (one sample per TSV row, every rotation / cycle).

A :class:`TsvSample` has the fields :func:`eval.runner.evaluate` reads of a V*Bench sample
(``question_id``, ``question``, ``options``, ``answer`` index or None, ``category``, ``tag``,
``image``, ``source``) plus ``extra``: the TSV fields that :func:`eval.vlmevalkit.report_run` joins to
its prediction record (by ``question_id``) for :mod:`eval.circular` (``index``, ``g_index`` / ``cycle``,
``l2_category``, ``split``, ``choices`` ``{letter: text}``, ``gold_letter``).

Images stay in the file: ``image`` is a :class:`TsvImage` (where the base64 is), equal for the rows
that share one encoded image (MMBench rotations refer to their main row), so the runner binds each
image once. HR-Bench repeats the base64 in each cycle's row; the cycles of a question (same image by
construction of the grouping) all point at their first row's copy. Samples are ordered question by
question (main row, then its rotations / cycles), which keeps the rows of one image together.

The MMBench ``hint``, when present, is prepended as in VLMEvalKit's prompt: ``"Hint: {hint}\\n"``
before the question (the options are laid out by the agent's answer protocol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from eval.readers.hrbench import read_hrbench
from eval.readers.images import decode_base64, image_from_bytes
from eval.readers.mmbench import read_mmbench
from eval.readers.tsv import TsvReader
from seal.core.image_io import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class TsvImage:
    """An image inside a TSV: the base64 ``image`` field of the row starting at byte ``offset`` (file
    line ``line``). Equal values are the same encoded image; plain data, so samples pickle to worker
    processes. The agent binds it through :meth:`open_image` (:meth:`seal.agent.pipeline.Agent.set_image`)."""

    path: Path
    offset: int
    line: int

    def open_image(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """The image, re-read from the file and decoded: upright ``RGB`` ``uint8``."""
        raw = TsvReader(self.path, ("image",)).read_row_at(self.offset, self.line)["image"]
        where = f"line {self.line}: column 'image'"
        return image_from_bytes(decode_base64(raw, self.path, where), self.path, where, max_pixels)

    def __str__(self) -> str:
        return f"{self.path}#line{self.line}"


@dataclass(frozen=True)
class TsvSample:
    """One TSV row to ask. ``answer`` is the gold option's index (None: TEST split, no answers)."""

    question_id: str
    question: str
    options: tuple[str, ...]
    answer: int | None
    category: str
    image: TsvImage
    source: Path
    tag: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def mmbench_question(question: str, hint: str | None) -> str:
    """The question as asked: ``"Hint: {hint}\\n{question}"`` when the row has a hint."""
    return question if hint is None else f"Hint: {hint}\n{question}"


def mmbench_samples(path: Path, protocol: str = "letter") -> list[TsvSample]:
    """Every row of an MMBench TSV (dev: with answers; test: ``answer`` None), question by question.
    ``protocol`` does not change what is read (the agent's ``answer_protocol`` decides how it answers)."""
    ds = read_mmbench(path)
    samples = []
    for question in ds.questions():
        for row in question.rows:
            image = TsvImage(ds.path, *ds.image_location(row.index))
            samples.append(TsvSample(
                question_id=str(row.index), question=mmbench_question(row.question, row.hint), options=row.options,
                answer=row.answer_index, category=row.category, image=image, source=ds.path,
                extra={"index": row.index, "g_index": row.g_index, "l2_category": row.l2_category,
                       "split": row.split, "choices": dict(zip(row.letters, row.options)),
                       "gold_letter": row.answer}))
    return samples


def hrbench_samples(path: Path, protocol: str = "letter") -> list[TsvSample]:
    """Every row of an HR-Bench TSV (4K or 8K; streamed, images re-read on demand), question by question."""
    ds = read_hrbench(path)
    samples = []
    for question in ds.questions:
        first = question.rows[0]  # the cycles share one image (grouping key): bind it once per question
        image = TsvImage(ds.path, first.offset, first.line)
        for row in question.rows:
            samples.append(TsvSample(
                question_id=str(row.index), question=row.question, options=row.options, answer=row.answer_index,
                category=row.category, image=image, source=ds.path,
                extra={"index": row.index, "cycle": row.cycle, "choices": dict(zip("ABCD", row.options)),
                       "gold_letter": row.answer}))
    return samples


TSV_DATASETS: dict[str, Callable[[Path, str], list[TsvSample]]] = {"mmbench": mmbench_samples,
                                                                    "hrbench": hrbench_samples}
"""The runner's TSV benchmarks: ``--dataset`` name -> reader ``(path, protocol) -> samples``."""
