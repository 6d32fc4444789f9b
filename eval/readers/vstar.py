"""V*Bench reader: the per-image JSON folder layout and ``test_questions.jsonl``.

Folder layout (``craigwu/vstar_bench``, and SynthVStar, see api.md)::

    ROOT/direct_attributes/sa_4690.jpg + sa_4690.json
    ROOT/relative_position/...
    ROOT/GPT4V-hard/, ROOT/OCR/         extra sets, never read unless declared
    ROOT/categories.json                optional: {"categories": [folder, ...]} replaces the default
                                        (direct_attributes, relative_position)

Each JSON holds ``target_object`` (list[str]), ``bbox`` (list of ``[x, y, w, h]`` absolute pixels,
top-left origin, one per target), ``question`` (str), ``options`` (full sentences, **the first is
correct**) and optionally ``tag`` (SynthVStar). Samples are scored by option likelihood
(:data:`PROTOCOL_LIKELIHOOD`).

``test_questions.jsonl`` holds one question per line: ``image`` (path relative to ROOT), ``text``
(question, ``(A) ...`` option lines with short, shuffled options, then an instruction line),
``category``, ``question_id`` (a string) and ``label`` (the correct letter); scored by letter
(:data:`PROTOCOL_LETTER`).

Images are paired with their JSON by file stem (never ``split('.')``, so dotted paths work), are
not decoded here, and non-image files (``.DS_Store``, ``._*`` resource forks, notes) are skipped.
Order is deterministic: categories in declared order, files sorted by name within a category.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seal.core.errors import InputError

DEFAULT_CATEGORIES = ("direct_attributes", "relative_position")
EXTRA_FOLDERS = ("GPT4V-hard", "OCR")
"""Folders of the published repo that are not part of the 191 questions (read only when declared)."""
CATEGORIES_FILE = "categories.json"
QUESTIONS_FILE = "test_questions.jsonl"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
PROTOCOL_LIKELIHOOD = "likelihood"
"""Folder samples: full-sentence options, ``options[0]`` correct, scored by per-option likelihood."""
PROTOCOL_LETTER = "letter"
"""``test_questions.jsonl`` samples: lettered short options, the answer is a letter."""
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OPTION_LINE = re.compile(r"^\(([A-Z])\)[ \t]?(.*)$")


@dataclass(frozen=True)
class VStarSample:
    """One V*Bench question.

    ``image`` is the image file (absolute when the root was). ``options`` are in file order and
    ``answer`` indexes the correct one (0 for folder samples). ``boxes_xywh`` are ``(x, y, w, h)``
    absolute pixels of the full upright image, one per name in ``targets`` (both empty for jsonl
    samples, which carry no boxes). ``protocol`` is :data:`PROTOCOL_LIKELIHOOD` or
    :data:`PROTOCOL_LETTER`; ``source`` the JSON / jsonl file the sample came from.
    """

    question_id: str
    category: str
    image: Path
    question: str
    options: tuple[str, ...]
    answer: int
    targets: tuple[str, ...]
    boxes_xywh: tuple[tuple[float, float, float, float], ...]
    tag: str | None
    protocol: str
    source: Path

    @property
    def letters(self) -> str:
        """Option letters, ``"AB"`` / ``"ABCD"``."""
        return LETTERS[: len(self.options)]

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def boxes_xyxy(self) -> np.ndarray:
        """``(N, 4)`` float64 ``(x1, y1, x2, y2)`` full-image pixels (``(0, 4)`` without boxes)."""
        from seal.core.geometry import xywh_to_xyxy

        if not self.boxes_xywh:
            return np.zeros((0, 4), dtype=np.float64)
        return xywh_to_xyxy(np.asarray(self.boxes_xywh, dtype=np.float64))


def read_vstar(path: str | Path, check_images: bool = True) -> list[VStarSample]:
    """A benchmark folder (:func:`read_vstar_folder`) or a ``.jsonl`` file (:func:`read_vstar_jsonl`)."""
    p = Path(path)
    if p.is_dir():
        return read_vstar_folder(p)
    if p.is_file():
        return read_vstar_jsonl(p, check_images=check_images)
    raise InputError("no such file or folder (expected a V*Bench folder or a test_questions.jsonl)", p)


def read_categories(root: str | Path) -> list[str]:
    """The sample folders of ``root``: those in ``categories.json`` when present, else the defaults."""
    root = Path(root)
    path = root / CATEGORIES_FILE
    if not path.is_file():
        return list(DEFAULT_CATEGORIES)
    data = _load_json(path)
    names = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names:
        raise InputError(f"field 'categories': expected a non-empty list of folder names, found {names!r}", path)
    for name in names:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise InputError(f"field 'categories': expected plain folder names, found {name!r}", path)
    if len(set(names)) != len(names):
        raise InputError(f"field 'categories': duplicated names in {names}", path)
    return list(names)


def read_vstar_folder(root: str | Path) -> list[VStarSample]:
    """Every sample of a V*Bench-layout folder, categories in order, files sorted by name.

    Raises:
        InputError: missing root / category folder, an image without JSON or a JSON without image,
            two images with one stem, malformed JSON or fields (naming the file and field), no samples.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("V*Bench folder not found", root)
    categories = read_categories(root)
    samples: list[VStarSample] = []
    for category in categories:
        folder = root / category
        if not folder.is_dir():
            how = (f"declared in {CATEGORIES_FILE}" if (root / CATEGORIES_FILE).is_file()
                   else "a default V*Bench category")
            raise InputError(f"category folder {category!r} ({how}) not found", folder)
        for image, annotation in _pairs(folder):
            samples.append(parse_annotation(annotation, image, category))
    if not samples:
        raise InputError(f"no samples found in the category folders {categories}", root)
    return samples


def parse_annotation(path: Path, image: Path, category: str) -> VStarSample:
    """One per-sample JSON, validated; ``question_id`` is ``<category>/<stem>``."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object with V*Bench fields, found {type(data).__name__}", path)
    targets = _field(data, "target_object", list, path)
    boxes = _field(data, "bbox", list, path)
    question = _field(data, "question", str, path)
    options = _field(data, "options", list, path)
    for i, name in enumerate(targets):
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"field 'target_object[{i}]': expected a non-empty string, found {name!r}", path)
    if len(boxes) != len(targets):
        raise InputError(f"field 'bbox': expected one box per target_object ({len(targets)}), "
                         f"found {len(boxes)}", path)
    if not question.strip():
        raise InputError("field 'question': expected a non-empty string", path)
    if not options:
        raise InputError("field 'options': expected a non-empty list of answer sentences, found []", path)
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise InputError(f"field 'options[{i}]': expected a non-empty string, found {option!r}", path)
    tag = data.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise InputError(f"field 'tag': expected a string, found {type(tag).__name__}", path)
    return VStarSample(
        question_id=f"{category}/{path.stem}", category=category, image=image, question=question,
        options=tuple(options), answer=0, targets=tuple(targets),
        boxes_xywh=tuple(_box_xywh(b, f"bbox[{i}]", path) for i, b in enumerate(boxes)),
        tag=tag, protocol=PROTOCOL_LIKELIHOOD, source=path)


def read_vstar_jsonl(path: str | Path, image_root: str | Path | None = None,
                     check_images: bool = True) -> list[VStarSample]:
    """Every line of a ``test_questions.jsonl`` (blank lines skipped), in file order.

    Args:
        path: the ``.jsonl`` file.
        image_root: what ``image`` paths are relative to (default: the file's folder).
        check_images: require every image file to exist.

    Raises:
        InputError: naming the file, line and field of the first problem (bad JSON, missing keys,
            no ``(A)`` option lines, a label that is not one of the option letters, a duplicated
            ``question_id``, a missing image).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file (expected a V*Bench test_questions.jsonl)", path)
    root = Path(image_root) if image_root is not None else path.parent
    samples: list[VStarSample] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            sample = _parse_question_line(line, number, path, root, check_images)
            if sample.question_id in seen:
                raise InputError(f"line {number}: field 'question_id': {sample.question_id!r} appears twice", path)
            seen.add(sample.question_id)
            samples.append(sample)
    if not samples:
        raise InputError("no questions found (empty file)", path)
    return samples


def split_question_text(text: str) -> tuple[str, list[str]]:
    """``"Q?\\n(A) x\\n(B) y\\nAnswer with ..."`` -> ``("Q?", ["x", "y"])``.

    Options are the consecutive ``(A)``, ``(B)``, ... lines after the question; whatever follows
    them (the answer instruction) is dropped. Raises ``ValueError`` without an ``(A)`` line.
    """
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if (m := _OPTION_LINE.match(ln)) and m.group(1) == "A"), None)
    if start is None:
        raise ValueError("expected the options as '(A) ...' lines after the question")
    options: list[str] = []
    for line in lines[start:]:
        m = _OPTION_LINE.match(line)
        if not m or m.group(1) != LETTERS[len(options)]:
            break
        if not m.group(2).strip():
            raise ValueError(f"option ({m.group(1)}) is empty")
        options.append(m.group(2).strip())
    return "\n".join(lines[:start]).strip(), options


# ---------------------------------------------------------------------- internals
def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    """``(image, json)`` pairs of one category folder, sorted by file name."""
    images: dict[str, Path] = {}
    annotations: dict[str, Path] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue  # .DS_Store, ._sa_1.jpg resource forks, sub-folders
        suffix = entry.suffix.lower()
        if suffix == ".json":
            annotations[entry.stem] = entry
        elif suffix in IMAGE_SUFFIXES:
            if entry.stem in images:
                raise InputError(f"two images share the stem {entry.stem!r} ({images[entry.stem].name}, "
                                 f"{entry.name}); cannot tell which one {entry.stem}.json describes", folder)
            images[entry.stem] = entry
    for stem, annotation in annotations.items():
        if stem not in images:
            raise InputError(f"annotation without an image beside it (expected {stem}.jpg or another of "
                             f"{sorted(IMAGE_SUFFIXES)})", annotation)
    pairs = []
    for stem, image in images.items():
        if stem not in annotations:
            raise InputError(f"image without its annotation {stem}.json beside it", image)
        pairs.append((image, annotations[stem]))
    return pairs


def _parse_question_line(line: str, number: int, path: Path, root: Path, check_images: bool) -> VStarSample:
    where = f"line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})", path) from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, found {type(data).__name__}", path)
    image = _field(data, "image", str, path, where)
    text = _field(data, "text", str, path, where)
    category = _field(data, "category", str, path, where)
    label = _field(data, "label", str, path, where)
    qid = data.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        raise InputError(f"{where}: field 'question_id': expected a string such as \"0\", found {qid!r}", path)
    try:
        question, options = split_question_text(text)
    except ValueError as exc:
        raise InputError(f"{where}: field 'text': {exc}", path) from None
    letter = label.strip().strip("()").upper()
    if len(letter) != 1 or letter not in LETTERS[: len(options)]:
        raise InputError(f"{where}: field 'label': expected one of the option letters "
                         f"{list(LETTERS[: len(options)])}, found {label!r}", path)
    image_path = root / image
    if check_images and not image_path.is_file():
        raise InputError(f"{where}: field 'image': {image_path} not found", path)
    return VStarSample(
        question_id=str(qid), category=category, image=image_path, question=question, options=tuple(options),
        answer=LETTERS.index(letter), targets=(), boxes_xywh=(), tag=None, protocol=PROTOCOL_LETTER, source=path)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from None


def _field(data: dict, key: str, kind: type, path: Path, where: str = "") -> Any:
    prefix = f"{where}: " if where else ""
    if key not in data:
        raise InputError(f"{prefix}missing field {key!r} (found {sorted(data)})", path)
    value = data[key]
    if not isinstance(value, kind):
        raise InputError(f"{prefix}field {key!r}: expected {kind.__name__}, found {type(value).__name__} "
                         f"{str(value)[:60]!r}", path)
    return value


def _box_xywh(box: Any, field: str, path: Path) -> tuple[float, float, float, float]:
    ok = (isinstance(box, list) and len(box) == 4
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box))
    if not ok:
        raise InputError(f"field {field!r}: expected [x, y, w, h] (4 numbers), found {box!r}", path)
    if box[2] < 0 or box[3] < 0:
        raise InputError(f"field {field!r}: expected a non-negative width and height, found {box!r}", path)
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
