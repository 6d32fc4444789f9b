"""V*Bench-format data (a benchmark folder or a ``test_questions.jsonl``, read with
:func:`eval.readers.vstar.read_vstar`) as training records for both models.

- VQA: a folder question (full-sentence options, the first correct) gives two conversations: the
  question answered with the correct sentence (the likelihood protocol scores exactly that reply)
  and the lettered question (options shuffled, seeded) answered with the correct letter; a
  ``test_questions.jsonl`` line gives its lettered question answered with its label.
- Search model: each image with its target names and boxes (questions on one image are merged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.readers.vstar import PROTOCOL_LIKELIHOOD, VStarSample, read_vstar
from seal.core.errors import InputError
from training.data.records import Conversation, DetectionImage, DetectionSet, Instance, Turn


def vstar_conversations(path: str | Path, seed: int = 0) -> list[Conversation]:
    """The conversations of the V*Bench folder or jsonl ``path`` (see the module docstring); the
    letter examples' option order is drawn from ``(seed, sample index)``."""
    from seal.core.tokens import OPTION_LETTERS
    from seal.vqa.prompts import letter_question

    out = []
    for i, s in enumerate(read_vstar(path)):
        if s.protocol == PROTOCOL_LIKELIHOOD:
            order = np.random.default_rng([seed, i]).permutation(len(s.options))
            letter = OPTION_LETTERS[int(np.argmax(order == s.answer))]
            out.append(Conversation(f"{s.question_id}#sentence", s.image,
                                    (Turn(s.question, s.options[s.answer]),), s.source))
            out.append(Conversation(f"{s.question_id}#letter", s.image,
                                    (Turn(letter_question(s.question, [s.options[k] for k in order]), letter),),
                                    s.source))
        else:
            out.append(Conversation(s.question_id, s.image,
                                    (Turn(letter_question(s.question, list(s.options)), s.answer_letter),), s.source))
    return out


def vstar_detections(path: str | Path) -> DetectionSet:
    """The annotated images of the V*Bench folder ``path`` (a jsonl has no boxes: refused).

    Raises:
        InputError: a ``test_questions.jsonl`` (no boxes), an unreadable image, a box outside its image.
    """
    from seal.core.image_io import image_size

    samples: list[VStarSample] = read_vstar(path)
    if not any(s.targets for s in samples):
        raise InputError("the search model trains on target boxes; this V*Bench file has none (use the "
                         "benchmark folder, whose JSONs hold bbox)", path)
    by_image: dict[Path, list[VStarSample]] = {}
    for s in samples:
        by_image.setdefault(s.image, []).append(s)
    images, names = [], []
    for image, group in by_image.items():
        width, height = image_size(image)
        seen, instances = set(), []
        for s in group:
            for name, box in zip(s.targets, s.boxes_xywh):
                check_box(box, width, height, s.source, f"target {name!r}")
                if (name, box) not in seen:
                    seen.add((name, box))
                    instances.append(Instance(name.strip(), tuple(float(v) for v in box)))
                    names.append(name.strip())
        images.append(DetectionImage(group[0].question_id, image, width, height, tuple(instances), group[0].source))
    return DetectionSet(tuple(images), tuple(dict.fromkeys(names)))


def check_box(box, width: int, height: int, source: Path, where: str, slack: float = 1.0) -> None:
    """Refuse an ``xywh`` box with a non-positive side or reaching more than ``slack`` px outside the
    ``width x height`` image."""
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise InputError(f"{where}: bbox {list(box)} has a non-positive width or height", source)
    if x < -slack or y < -slack or x + w > width + slack or y + h > height + slack:
        raise InputError(f"{where}: bbox {list(box)} (xywh) lies outside the {width}x{height} image", source)
