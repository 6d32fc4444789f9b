"""LLaVA-format conversation JSON -> :class:`Conversation` records.

The file is a JSON list (or JSON Lines, one entry per line, for ``.jsonl``)::

    [{"id": "0001", "image": "coco/0001.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is on the table?"},
                        {"from": "gpt", "value": "A red cup."},
                        {"from": "human", "value": "And its handle?"},
                        {"from": "gpt", "value": "On the left."}]}, ...]

``image`` is relative to the image root (default: the JSON's folder); an entry without ``image`` is
a text-only conversation. Turns alternate ``human`` / ``gpt`` starting with ``human`` (a leading
``system`` turn is refused rather than silently dropped); an image entry's ``<image>`` placeholder
must be in its first human turn (where the prompt layout puts the view) and nowhere else. Any
problem is an :class:`InputError` naming the file and the entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seal.core.errors import InputError
from seal.core.tokens import IMAGE_TOKEN
from training.data.records import Conversation, Turn

HUMAN = ("human", "user")
ASSISTANT = ("gpt", "assistant")


def read_llava_json(path: str | Path, image_root: str | Path | None = None,
                    check_images: bool = True) -> list[Conversation]:
    """Every entry of the LLaVA-format file ``path`` as a :class:`Conversation`.

    Args:
        path: a ``.json`` list or a ``.jsonl`` file.
        image_root: the folder ``image`` paths are relative to (default: the file's folder).
        check_images: refuse entries whose image file does not exist.

    Raises:
        InputError: unreadable or malformed JSON, a malformed entry, a missing image (one line
            naming the file and the entry).
    """
    p = Path(path)
    root = Path(image_root) if image_root else p.parent
    entries = _load(p)
    out = []
    for number, entry in enumerate(entries):
        out.append(_entry(entry, number, p, root, check_images))
    if not out:
        raise InputError("expected at least one conversation, found none", p)
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"entry id {dup!r} appears more than once", p)
    return out


def _load(p: Path) -> list[Any]:
    if not p.is_file():
        raise InputError("no such file (expected a LLaVA-format conversation JSON)", p)
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"malformed JSON ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})", p) from None
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of conversations, found a {type(data).__name__}", p)
    return data


def _entry(entry: Any, number: int, p: Path, root: Path, check_images: bool) -> Conversation:
    where = f"entry {number}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object, found {type(entry).__name__}", p)
    if "id" in entry:
        where = f"entry {number} (id {entry['id']!r})"
    turns = entry.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise InputError(f"{where}: 'conversations' must be a list of at least one human and one gpt turn", p)
    image = entry.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise InputError(f"{where}: 'image' must be a file path, found {image!r}", p)
    image_path = None
    if image is not None:
        image_path = root / image
        if check_images and not image_path.is_file():
            raise InputError(f"{where}: image {image!r} not found under {root}", p)
    pairs = []
    for k in range(0, len(turns), 2):
        q, a = turns[k], turns[k + 1] if k + 1 < len(turns) else None
        for t, roles, want in ((q, HUMAN, "human"), (a, ASSISTANT, "gpt")):
            if not isinstance(t, dict) or t.get("from") not in roles or not isinstance(t.get("value"), str):
                found = t.get("from") if isinstance(t, dict) else t
                raise InputError(f"{where}: turn {k + (want == 'gpt')} must be {{'from': '{want}', 'value': "
                                 f"str}}, found {found!r}", p)
        text = q["value"]
        holds = text.count(IMAGE_TOKEN)
        if holds and (image_path is None or k > 0 or holds > 1):
            why = "has no 'image'" if image_path is None else "may hold one <image>, in its first human turn"
            raise InputError(f"{where}: turn {k} has {IMAGE_TOKEN} but the entry {why}", p)
        question = text.replace(IMAGE_TOKEN, "").strip()
        if not question or not a["value"].strip():
            raise InputError(f"{where}: turn {k} or {k + 1} is empty", p)
        pairs.append(Turn(question, a["value"].strip()))
    return Conversation(str(entry.get("id", number)), image_path, tuple(pairs), p)


def write_llava_json(path: str | Path, conversations: list[dict[str, Any]]) -> Path:
    """Write ``conversations`` (LLaVA-format entries) as one indented JSON list."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(conversations, indent=1) + "\n", encoding="utf-8")
    return out
