"""Which option a prediction names: VLMEvalKit's rule-based ``can_infer`` (``vlmeval/utils/matching_util.py``).

:func:`extract_choice` tries, in order (no LLM judge: VLMEvalKit's ``exact_matching`` mode):

1. ``option``: an option letter as an exact token. The text is split on whitespace after replacing
   ``. ( ) [ ] , : ; ! * # { }`` by spaces; exactly one of the choice letters must occur as a token
   and its first occurrence must be among the last 4 tokens (VLMEvalKit PR #1175), so ``"B"``,
   ``"(B)"``, ``"The answer is B."`` match but ``"A dog is on the left, so B"`` does not.
2. ``text``: exactly one option text is a (case-insensitive) substring of the prediction, and the
   prediction is at most twice as long as all option texts together.
3. ``answer_is``: the regex ``answer is X`` (VLMEvalKit PR #1552), X a choice letter.

A prediction matching none of them has no choice (None): it counts as wrong, never as a random letter.
"""

from __future__ import annotations

import re
from typing import Mapping

PUNCTUATION = ".()[],:;!*#{}"
"""Characters VLMEvalKit replaces by spaces before looking for letter tokens."""
ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([A-Z])\**")


def option_letter(prediction: str, choices: Mapping[str, str]) -> str | None:
    """Step 1: the one choice letter appearing as a token among the last 4 tokens, else None."""
    text = prediction
    for ch in PUNCTUATION:
        text = text.replace(ch, " ")
    tokens = text.split()
    found = [letter for letter in choices if letter in tokens]
    if len(found) != 1:
        return None
    return found[0] if tokens.index(found[0]) > len(tokens) - 5 else None


def option_text(prediction: str, choices: Mapping[str, str]) -> str | None:
    """Step 2: the letter of the one option whose text the prediction contains, else None."""
    answer = prediction.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    found = [letter for letter, value in choices.items() if str(value).lower() in answer]
    return found[0] if len(found) == 1 else None


def answer_is(prediction: str, choices: Mapping[str, str]) -> str | None:
    """Step 3: ``... answer is X`` with X a choice letter, else None."""
    match = ANSWER_IS.search(prediction)
    return match.group(1).upper() if match and match.group(1).upper() in choices else None


RULES = (("option", option_letter), ("text", option_text), ("answer_is", answer_is))


def extract_choice(prediction: str | None, choices: Mapping[str, str]) -> tuple[str | None, str]:
    """The option letter a prediction names, and which rule found it.

    Args:
        prediction: the model's reply (a letter, an option's text, or a sentence); None = no reply.
        choices: ``{letter: option text}`` of the row's options, e.g. ``{"A": "green", "B": "red"}``.

    Returns:
        ``(letter, rule)``: rule is ``option`` / ``text`` / ``answer_is``; ``(None, "none")`` when no
        rule matches.
    """
    if prediction is None or not str(prediction).strip():
        return None, "none"
    for name, rule in RULES:
        letter = rule(str(prediction), choices)
        if letter is not None:
            return letter, name
    return None, "none"
