"""Writers of small, valid benchmark files in the real formats (V*Bench, MMBench, HR-Bench).

Every writer returns what a correct reader must find (counts, ids, answers), so tests can assert
exact values. Images are tiny synthetic JPEGs; TSVs are written like VLMEvalKit's pandas
``to_csv(sep='\\t', quoting=csv.QUOTE_ALL)`` (missing values as empty fields).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

INSTRUCTION = "Answer with the option's letter from the given choices directly."
MMBENCH_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
                   "l2-category", "comment", "split"]
HRBENCH_COLUMNS = ["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"]


# ---------------------------------------------------------------------- images
def jpeg_bytes(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 40, 40),
               noise_seed: int | None = None, quality: int = 90) -> bytes:
    """A JPEG of a flat colour, or of uniform noise when ``noise_seed`` is given (large, incompressible)."""
    if noise_seed is None:
        img = Image.new("RGB", (width, height), color)
    else:
        pixels = np.random.default_rng(noise_seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def big_jpeg_bytes(min_base64_chars: int = 140_000, seed: int = 0) -> bytes:
    """A noise JPEG whose base64 is longer than ``min_base64_chars`` (default: above csv's 131072 limit)."""
    side = 200
    while True:
        data = jpeg_bytes(side, side, noise_seed=seed, quality=95)
        if len(base64.b64encode(data)) > min_base64_chars:
            return data
        side += 60


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------- V*Bench
def write_vstar_sample(root: Path, category: str, stem: str, targets: list, bboxes: list, question: str,
                       options: list, tag: str | None = None, size: tuple[int, int] = (64, 48),
                       suffix: str = ".jpg") -> Path:
    """``root/category/stem<suffix>`` + ``stem.json``; returns the JSON path."""
    folder = Path(root) / category
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 200)).save(folder / f"{stem}{suffix}")
    data: dict[str, Any] = {"target_object": targets, "bbox": bboxes, "question": question, "options": options}
    if tag is not None:
        data["tag"] = tag
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_vstar_folder(root: Path, extras: bool = True, junk: bool = True) -> dict[str, Any]:
    """A V*Bench folder: 3 ``direct_attributes`` (one with 2 options, one with a dotted stem),
    2 ``relative_position`` (one with empty target/bbox lists); with ``extras`` also ``GPT4V-hard/``
    and ``OCR/`` samples, with ``junk`` a ``.DS_Store``, a ``._`` resource fork and a notes file.

    Returns the expected summary: ``n_samples``, ``categories``, ``n_targets`` and ``ids`` (in order).
    """
    root = Path(root)
    da, rp = "direct_attributes", "relative_position"
    write_vstar_sample(root, da, "sa_1", ["cup"], [[10, 5, 8, 6]], "What is the color of the cup?",
                       ["The color of the cup is red.", "The color of the cup is blue.",
                        "The color of the cup is green.", "The color of the cup is white."])
    write_vstar_sample(root, da, "sa_10", ["bus"], [[1, 2, 30, 20]], "Is the color of the bus red or yellow?",
                       ["The color of the bus is yellow.", "The color of the bus is red."])
    write_vstar_sample(root, da, "sa_2.v2", ["glove"], [[3, 4, 5, 6]], "What is the material of the glove?",
                       ["The material of the glove is rubber.", "The material of the glove is cotton.",
                        "The material of the glove is leather.", "The material of the glove is kevlar."])
    write_vstar_sample(root, rp, "sa_3", ["steel ladder", "wagon"], [[11, 6, 2, 4], [34, 8, 6, 3]],
                       "Is the steel ladder on the left or right side of the wagon?",
                       ["The steel ladder is on the left side of the wagon.",
                        "The steel ladder is on the right side of the wagon."])
    write_vstar_sample(root, rp, "sa_4", [], [], "Is the suitcase on the left or right side of the river?",
                       ["The suitcase is on the left side of the river.",
                        "The suitcase is on the right side of the river."])
    if extras:
        write_vstar_sample(root, "GPT4V-hard", "4", ["sign"], [[1, 1, 4, 4]], "What does the sign say?",
                           ["It says stop.", "It says go."])
        write_vstar_sample(root, "OCR", "ocr_1", ["label"], [[1, 1, 4, 4]], "What is written?", ["abc", "abd"])
    if junk:
        (root / da / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (root / rp / "._sa_3.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        (root / rp / "notes.txt").write_text("not a sample\n")
    return {"n_samples": 5, "categories": {da: 3, rp: 2}, "n_targets": 5,
            "ids": [f"{da}/sa_1", f"{da}/sa_10", f"{da}/sa_2.v2", f"{rp}/sa_3", f"{rp}/sa_4"]}


def vstar_question_record(image: str, question: str, options: Sequence[str], label: str, question_id: str,
                          category: str) -> dict[str, str]:
    """One ``test_questions.jsonl`` record in the published key order."""
    lettered = [f"({'ABCDEFGH'[i]}) {o}" for i, o in enumerate(options)]
    return {"image": image, "text": "\n".join([question, *lettered, INSTRUCTION]), "category": category,
            "question_id": question_id, "label": label}


def write_vstar_jsonl(root: Path, records: list[dict] | None = None) -> Path:
    """``root/test_questions.jsonl`` for the samples of :func:`write_vstar_folder` (short, shuffled options)."""
    if records is None:
        records = [
            vstar_question_record("direct_attributes/sa_1.jpg", "What is the color of the cup?",
                                  ["blue", "red", "green", "white"], "B", "0", "direct_attributes"),
            vstar_question_record("direct_attributes/sa_10.jpg", "Is the color of the bus red or yellow?",
                                  ["red", "yellow"], "B", "1", "direct_attributes"),
            vstar_question_record("relative_position/sa_3.jpg",
                                  "Is the steel ladder on the left or right side of the wagon?",
                                  ["left", "right"], "A", "2", "relative_position"),
        ]
    path = Path(root) / "test_questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- TSV (VLMEvalKit style)
def write_tsv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]], quote_all: bool = True) -> Path:
    """A TSV with ``columns`` in that order; ``None`` values become empty fields (pandas NaN)."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
                            lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return path


def circular_rows(base: dict[str, Any], letters: str = "ABCD") -> list[dict[str, Any]]:
    """``base`` plus its CircularEval copies: pass k rotates the labels right by k (VLMEvalKit CIRCULAR),
    ``index = base + k * 1e6``, answer remapped, ``image`` = the base index (a reference)."""
    n = sum(base.get(c) is not None for c in letters)
    labels = letters[:n]
    rows = [dict(base)]
    for k in range(1, n):
        rotated = labels[-k:] + labels[:-k]
        mapping = dict(zip(labels, rotated))
        copy = dict(base, index=base["index"] + k * 1_000_000, image=str(base["index"]))
        for old, new in mapping.items():
            copy[new] = base[old]
        copy["answer"] = mapping[base["answer"]]
        rows.append(copy)
    return rows


def mmbench_rows(big_image: bool = False) -> list[dict[str, Any]]:
    """3 questions / 8 rows: g=7 (4 options, 4 passes, answer A), g=12 (2 options, NaN hint and C/D,
    2 passes) and g=30 (2 passes, reusing question 7's image through a reference, answer B)."""
    image7 = b64(big_jpeg_bytes() if big_image else jpeg_bytes(color=(10, 200, 10)))
    q7 = {"index": 7, "question": "What is the main color of the picture?", "hint": "Look at the whole image.",
          "A": "green", "B": "red", "C": "blue", "D": "black", "answer": "A", "category": "image_scene",
          "image": image7, "source": "synthetic", "l2-category": "coarse_perception", "comment": None, "split": "dev"}
    q12 = {"index": 12, "question": "Is this picture bright?", "hint": None, "A": "yes", "B": "no", "C": None,
           "D": None, "answer": "A", "category": "image_quality", "image": b64(jpeg_bytes(color=(250, 250, 250))),
           "source": "synthetic", "l2-category": "coarse_perception", "comment": None, "split": "dev"}
    q30 = {"index": 30, "question": "Which word describes the picture?", "hint": "nan", "A": "dark", "B": "green",
           "C": None, "D": None, "answer": "B", "category": "image_style", "image": "7", "source": "synthetic",
           "l2-category": "coarse_perception", "comment": None, "split": "dev"}
    return circular_rows(q7) + circular_rows(q12) + circular_rows(q30)


def write_mmbench_tsv(path: Path, with_answers: bool = True, columns: Sequence[str] | None = None,
                      big_image: bool = False) -> dict[str, Any]:
    """An MMBench TSV of :func:`mmbench_rows` (TEST-style without ``answer`` when ``with_answers`` is
    False; ``columns`` reorders). Returns the expected summary and the rows written."""
    rows = mmbench_rows(big_image)
    cols = list(columns) if columns is not None else list(MMBENCH_COLUMNS)
    if not with_answers:
        cols.remove("answer")
        for row in rows:
            row["split"] = "test"
    write_tsv(path, cols, rows)
    return {"n_samples": 3, "n_rows": 8, "categories": {"image_scene": 1, "image_quality": 1, "image_style": 1},
            "rows": rows}


def hrbench_rows(n_questions: int = 2, image_pad: int = 0, same_text: bool = False) -> list[dict[str, Any]]:
    """``n_questions`` x 4 cycles, ``index = 4q + k``, answer ``"ABCD"[k]``, categories alternating
    single/cross, one distinct JPEG per question (``image_pad`` zero bytes appended after its end
    marker to make rows large; decoders ignore them). ``same_text`` gives every question one text."""
    rows = []
    for q in range(n_questions):
        image = b64(jpeg_bytes(color=(40 * q % 256, 90, 160)) + b"\0" * image_pad)
        correct, distractors = f"{27 + q}B", [f"{37 + q}B", f"{27 + q}D", f"{27 + q}E"]
        question = "What is the number above the entrance?" if same_text else f"What is the number on sign {q}?"
        for k in range(4):
            others = distractors[k % 3:] + distractors[: k % 3]
            options = others[:k] + [correct] + others[k:]
            rows.append({"index": 4 * q + k, "question": question, "answer": "ABCD"[k],
                         "category": ("single", "cross")[q % 2], **dict(zip("ABCD", options)),
                         "cycle_category": str(k), "image": image})
    return rows


def write_hrbench_tsv(path: Path, n_questions: int = 2, image_pad: int = 0, columns: Sequence[str] | None = None,
                      same_text: bool = False) -> dict[str, Any]:
    """An HR-Bench TSV of :func:`hrbench_rows`; returns the expected summary and the rows."""
    rows = hrbench_rows(n_questions, image_pad, same_text)
    write_tsv(path, list(columns) if columns is not None else HRBENCH_COLUMNS, rows)
    n_single = (n_questions + 1) // 2
    categories = {"single": n_single, "cross": n_questions - n_single}
    return {"n_samples": n_questions, "n_rows": 4 * n_questions,
            "categories": {k: v for k, v in categories.items() if v}, "rows": rows}
