"""The records the readers produce, whatever the file format: conversations (VQA) and annotated
images (search model). Boxes are ``xywh`` in full-image pixels of the upright image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's text (``<image>`` placeholders removed) and the reply to learn."""

    question: str
    reply: str


@dataclass(frozen=True)
class Conversation:
    """One training conversation.

    Attributes:
        id: the entry's id (for error messages).
        image: the image file, or None for a text-only conversation.
        turns: the exchanges in order; the loss is on every reply.
        source: the file the entry came from.
    """

    id: str
    image: Path | None
    turns: tuple[Turn, ...]
    source: Path


@dataclass(frozen=True)
class Instance:
    """One annotated object.

    Attributes:
        name: what a query calls it (the category name, or the annotation's grounding phrase).
        bbox_xywh: full-image pixels.
        polygon: full-image ``((x, y), ...)`` outline, or None (the box is the outline).
    """

    name: str
    bbox_xywh: tuple[float, float, float, float]
    polygon: tuple[tuple[float, float], ...] | None = None

    def outline(self) -> list[list[float]]:
        """``[[x, y], ...]``: the polygon, else the box's four corners."""
        if self.polygon:
            return [list(p) for p in self.polygon]
        x, y, w, h = self.bbox_xywh
        return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


@dataclass(frozen=True)
class DetectionImage:
    """One annotated image for the search model.

    Attributes:
        id: the image's id in its file.
        image: the image file.
        width, height: its size in pixels (upright).
        instances: the annotated objects.
        source: the annotation file.
    """

    id: str
    image: Path
    width: int
    height: int
    instances: tuple[Instance, ...]
    source: Path


@dataclass(frozen=True)
class DetectionSet:
    """Annotated images plus the names a negative row may ask for (every category / phrase of the set)."""

    images: tuple[DetectionImage, ...]
    names: tuple[str, ...]
    skipped: int = 0
    """Annotations skipped (e.g. COCO ``iscrowd`` regions), counted and logged by the loader."""
