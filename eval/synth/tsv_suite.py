"""Write a SynthVStar suite as one VLMEvalKit TSV: MMBench (CircularEval copies) or HR-Bench (4 cycles).

The questions and scenes are the V*Bench-layout generator's (:mod:`eval.synth.generate`): sample ``i``
is the same scene and question whatever the format. Images are base64 JPEGs; rows are written like
VLMEvalKit's pandas ``to_csv(sep='\\t', quoting=csv.QUOTE_ALL)`` (missing values as empty fields), one
row at a time, so a file is a pure function of the config (same seed: byte-identical file).

**MMBench** (``SynthMMBench_DEV.tsv`` with answers, ``SynthMMBench_TEST.tsv`` without the ``answer``
column), columns :data:`MMBENCH_COLUMNS`. Question ``g`` (= sample index) with N options (4 for an
attribute, 2 for left/right) has N rows as in VLMEvalKit's ``tools.CIRCULAR``: copy ``k`` has
``index = g + k * 1e6``, its options are the main row's rotated right by ``k`` (main-row letter ``j``
moves to letter ``(j - k) mod N``, the answer with it) and its ``image`` is ``g`` (a reference to the
main row). Rows go pass by pass: every main row, then every copy 1, and so on. The main row's options
are the short options in ``test_questions.jsonl``'s shuffled order. Categories: :data:`MMBENCH_CATEGORIES`.

**HR-Bench** (``SynthHRBench.tsv``), columns :data:`HRBENCH_COLUMNS`. ``single`` (FSP) = a one-target
attribute question, ``cross`` (FCP) = a two-target relation question. Each question has 4 rows,
``index = 4 q + k``, ``cycle_category = k``, the correct option at letter ``"ABCD"[k]`` and the
distractors re-ordered per cycle; the image's base64 is repeated in each row, as in the real files.
A relation question needs 4 options, so it is asked as "Where is the {a} relative to the {b}?" with
:data:`RELATION_OPTIONS` (the two objects are apart along x, so neither is directly above the other).
"""

from __future__ import annotations

import base64
import csv
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from eval.synth.config import SynthConfig
from eval.synth.questions import QUESTIONS
from eval.synth.sample import SynthSample, letter_rng, render_sample, sample_plan, sample_rng
from seal.core.errors import InputError

MMBENCH_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
                   "l2-category", "comment", "split")
"""The column order of the real MMBench TSVs (a TEST file has no ``answer``)."""
HRBENCH_COLUMNS = ("index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image")
MMBENCH_SPLITS = {"dev": "val", "test": "test"}
"""MMBench split -> the SynthVStar split its scenes are drawn from (dev and test never share a scene)."""
CIRCULAR_OFFSET = 1_000_000
"""Copy k of MMBench question g has ``index = g + k * CIRCULAR_OFFSET``."""
MMBENCH_CATEGORIES = {
    ("search", "attribute"): ("attribute_recognition", "finegrained_perception (instance-level)"),
    ("search", "spatial"): ("spatial_relationship", "finegrained_perception (cross-instance)"),
    ("coarse", "attribute"): ("coarse_attribute_recognition", "coarse_perception"),
    ("text", "attribute"): ("text_answerable_attribute", "text_answerable"),
    ("text", "spatial"): ("text_answerable_spatial", "text_answerable"),
}
"""(SynthVStar tag, question kind) -> MMBench (``category``, ``l2-category``); the small-target
questions take the real MMBench leaf names, the mixed suite's other tags names of their own."""
SOURCE = "synthvstar"
RELATION_QUESTION = "Where is the {a} relative to the {b}?"
RELATION_OPTIONS = {"left": "on the left side", "right": "on the right side"}
RELATION_DISTRACTORS = ("directly above", "directly below")
LETTERS = "ABCD"


def tsv_name(fmt: str, mmbench_split: str = "dev") -> str:
    """The file a format writes: ``SynthMMBench_DEV.tsv`` / ``SynthMMBench_TEST.tsv`` / ``SynthHRBench.tsv``
    (the stem names VLMEvalKit's result files; "mmbench" in it selects CircularEval there)."""
    if fmt == "mmbench":
        return f"SynthMMBench_{mmbench_split.upper()}.tsv"
    if fmt == "hrbench":
        return "SynthHRBench.tsv"
    raise ValueError(f"no TSV for format {fmt!r}")


def prepare_tsv_path(out_dir: str | Path, name: str, overwrite: bool) -> Path:
    """``out_dir/name``, the folder created; an existing suite there is refused unless ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("expected an output directory, found an existing file", out)
    path = out / name
    if path.exists() and not overwrite:
        raise InputError(f"already holds a suite ({name}); choose a new --out or pass --overwrite", out)
    out.mkdir(parents=True, exist_ok=True)
    return path


def write_mmbench_tsv(cfg: SynthConfig, path: Path, mmbench_split: str = "dev") -> dict[str, int]:
    """Write ``cfg.n`` questions (all their circular copies) to ``path``; ``dev`` has answers, ``test`` not.

    ``cfg.split`` must be the split's scene stream (:data:`MMBENCH_SPLITS`). Returns questions per category.
    """
    if MMBENCH_SPLITS.get(mmbench_split) != cfg.split:
        raise ValueError(f"MMBench split {mmbench_split!r} draws scenes from synth split "
                         f"{MMBENCH_SPLITS.get(mmbench_split)!r}, config has {cfg.split!r}")
    columns = [c for c in MMBENCH_COLUMNS if mmbench_split == "dev" or c != "answer"]
    counts: dict[str, int] = {}
    passes: list[list[dict]] = [[], [], [], []]  # rows of copy k (text only; the main rows hold the images)
    with _tsv_writer(path, columns) as write:
        for g, sample in _samples(cfg):
            shorts = sample.question.short_options
            order = [int(i) for i in letter_rng(cfg, g).permutation(len(shorts))]
            options = [shorts[i] for i in order]
            category, l2 = MMBENCH_CATEGORIES[(sample.tag, _kind(sample))]
            counts[category] = counts.get(category, 0) + 1
            base = {"question": sample.question.question, "hint": "", "category": category, "source": SOURCE,
                    "l2-category": l2, "comment": "", "split": mmbench_split}
            for k in range(len(options)):
                rotated = [options[(j + k) % len(options)] for j in range(len(options))]  # letter (j-k)%N <- j
                row = {**base, "index": g + k * CIRCULAR_OFFSET, "answer": LETTERS[(order.index(0) - k) % len(options)],
                       "image": _jpeg_base64(sample, cfg.jpeg_quality) if k == 0 else str(g),
                       **dict(zip(LETTERS, rotated + [""] * (4 - len(rotated))))}
                if k == 0:
                    write(row)
                else:
                    passes[k].append(row)
        for rows in passes[1:]:
            for row in rows:
                write(row)
    return counts


def write_hrbench_tsv(cfg: SynthConfig, path: Path) -> dict[str, int]:
    """Write ``cfg.n`` questions x 4 cycles to ``path``; returns questions per category (single / cross)."""
    counts = {"single": 0, "cross": 0}
    with _tsv_writer(path, HRBENCH_COLUMNS) as write:
        for q, sample in _samples(cfg):
            question, options = _hrbench_question(sample)
            category = "cross" if sample.question.kind == "spatial" else "single"
            counts[category] += 1
            image = _jpeg_base64(sample, cfg.jpeg_quality)
            rng = letter_rng(cfg, q)
            for k in range(len(LETTERS)):
                distractors = [options[1 + int(i)] for i in rng.permutation(len(options) - 1)]
                cycle = distractors[:k] + [options[0]] + distractors[k:]
                write({"index": 4 * q + k, "question": question, "answer": LETTERS[k], "category": category,
                       **dict(zip(LETTERS, cycle)), "cycle_category": str(k), "image": image})
    return {c: n for c, n in counts.items() if n}


def _samples(cfg: SynthConfig) -> Iterator[tuple[int, SynthSample]]:
    """Sample ``i`` exactly as :func:`eval.synth.generate.generate_benchmark` renders it."""
    for index in range(cfg.n):
        tag, kind = sample_plan(cfg, index)
        yield index, render_sample(sample_rng(cfg.seed, cfg.split, index), cfg, tag=tag, kind=kind)


def _kind(sample: SynthSample) -> str:
    return "spatial" if sample.question.kind == "spatial" else "attribute"


def _hrbench_question(sample: SynthSample) -> tuple[str, list[str]]:
    """HR-Bench wording: ``(question, 4 options, correct first)``. An attribute question is unchanged; a
    relation question keeps a text-only sample's leading statement and asks with :data:`RELATION_OPTIONS`."""
    q = sample.question
    if q.kind != "spatial":
        return q.question, list(q.short_options)
    a, b = (t.name for t in sample.targets[:2])
    asked = QUESTIONS["spatial"].format(a=a, b=b)
    if not q.question.endswith(asked):
        raise ValueError(f"unexpected spatial question wording: {q.question!r}")
    text = q.question[: len(q.question) - len(asked)] + RELATION_QUESTION.format(a=a, b=b)
    wrong = "right" if q.answer_short == "left" else "left"
    return text, [RELATION_OPTIONS[q.answer_short], RELATION_OPTIONS[wrong], *RELATION_DISTRACTORS]


def _jpeg_base64(sample: SynthSample, quality: int) -> str:
    buf = io.BytesIO()
    sample.image.save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


@contextmanager
def _tsv_writer(path: Path, columns: Sequence[str]) -> Iterator[Callable[[dict], None]]:
    """A callable writing one row dict (values in ``columns`` order) to ``path``, header first."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(columns)
        yield lambda row: writer.writerow([row[c] for c in columns])
