"""The "missing objects" refusal: how the VQA LLM asks for a visual search, written and parsed.

When the model cannot see what it needs, it is trained to reply with one fixed sentence that lists
the objects to search for (the reference's wording)::

    Sorry, I can not answer the question. Some visual information about the following objects is
    missing or unclear: striped star, blue circle.

:func:`format_refusal` writes it (names joined by ", ", or by "; " when a name holds a comma);
:func:`parse_missing_targets` reads it back robustly from free-form generations: the prefix is
matched whatever the case, spacing and small wording slips ("cannot", "objects are", tokenizer
spaces before punctuation), names may be quoted or ";"-separated, and junk is removed. The
reference did an exact substring match and a plain split on ",".
"""

from __future__ import annotations

import difflib
import re

REFUSAL_PREFIX = ("Sorry, I can not answer the question. Some visual information about the "
                  "following objects is missing or unclear:")
"""The fixed refusal sentence, up to and including its colon."""

MAX_NAME_CHARS = 64
"""Parsed names longer than this are dropped as junk."""
MAX_NAME_WORDS = 8
"""Parsed names with more words than this are dropped as junk."""

_ANCHOR = re.compile(
    r"(?:sorry\W*)?(?:i\s*(?:can\s*not|cannot|can't|can’t)\s*answer\s*(?:the|this)\s*question\W*)?"
    r"some\s*visual\s*information\s*about\s*the\s*following\s*objects?\s*(?:is|are)\s*"
    r"missing\s*or\s*unclear\s*[:\-–]?",
    re.IGNORECASE,
)
_FUZZY_TAIL = "some visual information about the following objects is missing or unclear"
_FUZZY_MIN_RATIO = 0.85
_LEADING_JUNK = re.compile(r"^(?:(?:and|or)\s+)?(?:[-*•]+\s*|\d+[.)]\s+)?(?:(?:the|a|an)\s+)?", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_QUOTES = "\"'`“”‘’"


def format_refusal(targets: list[str]) -> str:
    """The refusal sentence listing ``targets`` (ends with ".")."""
    names = [" ".join(t.split()) for t in targets if t.strip()]
    if not names:
        raise ValueError("format_refusal needs at least one target name")
    sep = "; " if any("," in n for n in names) else ", "
    return f"{REFUSAL_PREFIX} {sep.join(names)}."


def is_refusal(text: str) -> bool:
    """Whether ``text`` is (fuzzily) the refusal sentence."""
    return _find_list_start(text) is not None


def parse_missing_targets(text: str) -> list[str] | None:
    """The object names a refusal asks to search for, or None when ``text`` is a normal answer.

    Returns:
        Names in order of first appearance, de-duplicated case-insensitively, each stripped of
        quotes, a leading "the"/"a"/"an", list bullets and trailing punctuation; empty or over-long
        items are dropped. ``[]`` when the refusal lists nothing usable.
    """
    start = _find_list_start(text)
    if start is None:
        return None
    names: list[str] = []
    seen: set[str] = set()
    for raw in _raw_items(text[start:]):
        name = _clean(raw)
        if not name or len(name) > MAX_NAME_CHARS or len(name.split()) > MAX_NAME_WORDS:
            continue
        key = name.casefold()
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


def in_question_order(targets: list[str], question: str) -> list[str]:
    """``targets`` sorted by where the question first names each (case-insensitive); names the
    question does not contain keep their listed order, after the others.

    The VWM writes its entries, and its relation lines' subjects, in target order; training lays
    them out in the question's order, so the agent restores it whatever order the model listed.
    """
    text = " ".join(question.lower().split())

    def key(item: tuple[int, str]) -> tuple[int, int]:
        pos = text.find(" ".join(item[1].lower().split()))
        return (0, pos) if pos >= 0 else (1, item[0])

    return [name for _, name in sorted(enumerate(targets), key=key)]


def _find_list_start(text: str) -> int | None:
    """Index in ``text`` just after the refusal prefix, or None when there is no refusal."""
    match = _ANCHOR.search(text)
    if match:
        return match.end()
    # fuzzy fallback: compare the words before each ":" with the prefix's tail (small slips pass)
    for colon in (m.start() for m in re.finditer(":", text)):
        before = " ".join(re.sub(r"[^\w\s']", " ", text[:colon]).lower().split())
        ratio = difflib.SequenceMatcher(None, before[-len(_FUZZY_TAIL):], _FUZZY_TAIL).ratio()
        if ratio >= _FUZZY_MIN_RATIO:
            return colon + 1
    return None


def _raw_items(rest: str) -> list[str]:
    """The list items after the prefix: bullet lines, or one sentence split on ";" or ","."""
    lines = [line for line in rest.strip().splitlines()]
    if lines and _BULLET.match(lines[0]):
        bullets = []
        for line in lines:
            if not _BULLET.match(line):
                break
            bullets.append(line)
        return bullets
    for use_quotes in (True, False):  # an unbalanced quote: read again ignoring quotes
        sentence, closed = _scan(rest, stop=".!?\n", use_quotes=use_quotes)
        if not closed:
            continue
        for sep in (";", ","):
            parts, closed = _scan(sentence, split=sep, use_quotes=use_quotes)
            if len(parts) > 1 or sep == ",":
                return parts
    return []


def _scan(text: str, stop: str = "", split: str = "", use_quotes: bool = True):
    """Walk ``text`` outside quotes. With ``stop``: return (text up to the first unquoted sentence
    end, quotes balanced); with ``split``: return (parts split on the unquoted separator, balanced)."""
    parts, current, quote = [], [], None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote or (quote in "“‘" and ch in "”’"):
                quote = None
        elif use_quotes and ch in _QUOTES and (i == 0 or not text[i - 1].isalnum()):
            quote = ch
        elif stop and ch in stop and ch != "\n" and (i + 1 == len(text) or text[i + 1].isspace()):
            return "".join(current), True
        elif stop and ch == "\n" and "".join(current).strip():
            return "".join(current), True
        elif split and ch == split:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if stop:
        return "".join(current), quote is None
    parts.append("".join(current))
    return parts, quote is None


def _clean(item: str) -> str:
    name = " ".join(item.split())
    name = name.strip(" .,;:!?")
    name = _LEADING_JUNK.sub("", name, count=1)
    name = name.strip(_QUOTES + " ")
    name = _LEADING_JUNK.sub("", name, count=1)  # "the" inside quotes
    return name.strip(" .,;:!?" + _QUOTES)
