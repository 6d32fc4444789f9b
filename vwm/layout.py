"""The visual working memory (VWM) prompt layout: ONE layout for training and inference.

The VQA LLM sees the global view first, then one line per searched target, for any number of
targets (the reference used different token layouts in training and at inference, and silently
injected failed searches; see the reference notes, section 1.2)::

    <image>
    Additional visual information to focus on:
    <image>
    striped star at [0.120, 0.340, 0.151, 0.372]
    blue circle: not found
    red square at [0.500, 0.500, 0.520, 0.530]
    striped star is left of and above red square
    What is the color of the striped star?

- A found target with a crop: its crop image then ``"{name} at [x1, y1, x2, y2]"``; the box is
  ``xyxy`` normalised to the (unpadded) global image, in ``[0, 1]``, ``coord_decimals`` decimals.
- A found target past the first ``max_crops`` found ones: the location line only (no image).
- A failed search: ``"{name}: not found"`` (never a low-confidence box, never a crop).
- With ``relations`` and at least two found targets: one line per pair in entry order,
  ``"{a} is left|right of and above|below {b}"``, from the boxes' centres (at most
  ``max_relations`` lines). The coordinates say the same; the line saves a small LM from comparing
  digits across the prompt (a 4-layer tiny model never learned that from coordinates alone).
- No targets: ``"<image>\\n{question}"``; no image at all (the text-only pass): ``"{question}"``.

Every image is a square RGB PIL image: the global view letterboxed to ``view_side_px`` (or, for a
dynamic-resolution model, padded to its own long side: ``view_square``), the crops
letterboxed to ``crop_side_px`` (see :mod:`seal.core.crops`). The number of ``<image>`` placeholders in
the text always equals the number of images returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

from PIL import Image

from seal.core.geometry import normalize_xyxy
from seal.core.errors import ConfigError
from seal.core.tokens import IMAGE_TOKEN
from seal.core.crops import extract_crop, letterbox


@dataclass
class VWMConfig:
    """How found targets are cropped and written into the VQA prompt."""

    crop_scale: float = 2.0
    """Crop region side / the box's longer side (reference: 1.2 per axis, then stretched)."""
    min_context_px: int = 64
    """Minimum crop region side in full-image pixels, so tiny boxes keep some context (reference: none)."""
    crop_side_px: int = 336
    """Side of the square (letterboxed) crop images handed to the processor."""
    view_side_px: int = 672
    """Side of the square (letterboxed) global view handed to the processor (it resizes again to
    the model's input); bounds the memory of preprocessing very large images. Used when the view
    square is ``fixed``."""
    view_square: Literal["auto", "fixed", "own"] = "auto"
    """How the global view becomes the square image the processor gets. ``fixed``: letterboxed to
    ``view_side_px`` (a fixed-resolution tower, e.g. LLaVA-1.5's CLIP, resizes it to its input anyway).
    ``own``: padded to a square of its own long side, never resized, so a dynamic-resolution processor
    (LLaVA-OneVision, Qwen2.5-VL) reads the COARSE and FULL views at their own resolutions and each
    costs its own tokens. ``auto``: ``own`` when the model's processor counts more tokens for a larger
    image (:func:`vwm.budget.resolve_view_square`), else ``fixed``; where it was not resolved, ``fixed``."""
    max_crops: int = 4
    """At most this many found targets get a crop image (in target order); later ones get their
    location line only."""
    coord_decimals: int = 3
    """Decimals of the normalised coordinates (reference: 3)."""
    header: str = "Additional visual information to focus on:"
    """Line introducing the targets (written only when there is at least one target)."""
    relations: bool = True
    """Write the pairwise left / right and above / below relations of the found targets."""
    max_relations: int = 6
    """At most this many relation lines (pairs in entry order: 4 targets make 6)."""

    def __post_init__(self) -> None:
        if self.crop_scale < 1.0:
            raise ConfigError(f"vwm.crop_scale: expected >= 1 (the crop holds the box), found {self.crop_scale}")
        for name in ("min_context_px", "crop_side_px", "view_side_px"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vwm.{name}: expected >= 1, found {getattr(self, name)}")
        if self.max_relations < 0:
            raise ConfigError(f"vwm.max_relations: expected >= 0, found {self.max_relations}")
        if self.max_crops < 0:
            raise ConfigError(f"vwm.max_crops: expected >= 0, found {self.max_crops}")
        if self.view_square not in ("auto", "fixed", "own"):
            raise ConfigError(f"vwm.view_square: expected auto, fixed or own, found {self.view_square!r}")
        if not 1 <= self.coord_decimals <= 6:
            raise ConfigError(f"vwm.coord_decimals: expected 1..6, found {self.coord_decimals}")
        if IMAGE_TOKEN in self.header:
            raise ConfigError(f"vwm.header: must not contain {IMAGE_TOKEN}")


    def view_side(self, width: int, height: int) -> int:
        """Side (px) of the square a ``width x height`` global view is letterboxed to (see
        :attr:`view_square`; ``auto`` not resolved counts as ``fixed``)."""
        return max(int(width), int(height)) if self.view_square == "own" else self.view_side_px


@dataclass
class VWMEntry:
    """One searched target.

    Attributes:
        name: the target's name as the VQA LLM asked for it.
        found: whether the search found it; a failed search carries no box and no crop.
        box_xyxy: the found box, full-image pixels ``(x1, y1, x2, y2)``, or None.
        score: the search's confidence for the box (0 when not found).
        crop: the letterboxed square crop around the box (RGB PIL), or None.
        crop_region_xyxy: the region the crop shows, in the same pixels as ``box_xyxy``, or None.
    """

    name: str
    found: bool
    box_xyxy: tuple[float, float, float, float] | None = None
    score: float = 0.0
    crop: Image.Image | None = None
    crop_region_xyxy: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.found and self.box_xyxy is None:
            raise ValueError(f"VWM entry {self.name!r}: found=True needs box_xyxy")
        if not self.found and (self.box_xyxy is not None or self.crop is not None):
            raise ValueError(f"VWM entry {self.name!r}: a failed search carries no box and no crop")
        if self.box_xyxy is not None:
            self.box_xyxy = tuple(float(v) for v in self.box_xyxy)


@dataclass
class VisualWorkingMemory:
    """The global image plus what the search found (or did not find) for each target.

    Attributes:
        global_image: the full upright RGB image; boxes live in its pixel frame.
        entries: one :class:`VWMEntry` per target, in the order they are written in the prompt.
        config: crop and layout settings.
    """

    global_image: Image.Image
    entries: list[VWMEntry] = field(default_factory=list)
    config: VWMConfig = field(default_factory=VWMConfig)
    global_view: Image.Image | None = None
    """The global image already letterboxed to ``config.view_side_px`` (memories of one image can
    share it: the resize is most of a training example's cost); None: made on first use."""

    def __post_init__(self) -> None:
        side = self.config.view_side(*self.global_image.size)
        if self.global_view is not None and self.global_view.size != (side, side):
            raise ValueError(f"VWM global_view: expected {side}x{side}, found {self.global_view.size}")

    def view(self) -> Image.Image:
        """The global view: ``global_image`` letterboxed to a square of ``config.view_side`` (made once)."""
        if self.global_view is None:
            self.global_view, _ = letterbox(self.global_image, self.config.view_side(*self.global_image.size))
        return self.global_view

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the global image."""
        return self.global_image.size

    def add_target(self, name: str, box_xyxy: Sequence[float] | None, score: float = 0.0) -> VWMEntry:
        """Append a target: found (with its crop) when ``box_xyxy`` is given, else marked not found.

        A crop is made only while fewer than ``config.max_crops`` entries hold one.
        """
        crop = None
        if box_xyxy is not None and sum(e.crop is not None for e in self.entries) < self.config.max_crops:
            cfg = self.config
            crop = extract_crop(self.global_image, box_xyxy, cfg.crop_scale, cfg.min_context_px, cfg.crop_side_px)
        entry = VWMEntry(name=name, found=box_xyxy is not None,
                         box_xyxy=None if box_xyxy is None else tuple(box_xyxy),
                         score=float(score) if box_xyxy is not None else 0.0,
                         crop=None if crop is None else crop.image,
                         crop_region_xyxy=None if crop is None else tuple(float(v) for v in crop.region_xyxy))
        self.entries.append(entry)
        return entry

    @classmethod
    def from_search_results(cls, image: Image.Image, results: Iterable[Any],
                            config: VWMConfig | None = None) -> "VisualWorkingMemory":
        """Build from search results (objects with ``target``, ``found``, ``box_xyxy``, ``score``,
        e.g. ``search.result.SearchResult``); a result with ``found=False`` is marked not found."""
        vwm = cls(global_image=image, config=config or VWMConfig())
        for r in results:
            vwm.add_target(r.target, r.box_xyxy if r.found else None, r.score)
        return vwm


def build_prompt(question: str, vwm: VisualWorkingMemory | None) -> tuple[str, list[Image.Image]]:
    """The user turn text (with ``<image>`` placeholders) and its images, in placeholder order.

    Args:
        question: the question, possibly several lines (any ``<image>`` text in it is neutralised).
        vwm: the global image and searched targets; None for the text-only prompt.

    Returns:
        ``(text, images)``; ``text.count("<image>") == len(images)``; images are square RGB PIL.
    """
    question = question.replace(IMAGE_TOKEN, "image").strip()
    if vwm is None:
        return question, []
    cfg = vwm.config
    images = [vwm.view()]
    lines = [IMAGE_TOKEN]
    if vwm.entries:
        lines.append(cfg.header)
    width, height = vwm.image_size
    for entry in vwm.entries:
        name = _sanitize(entry.name)
        if not entry.found:
            lines.append(f"{name}: not found")
            continue
        if entry.crop is not None:
            lines.append(IMAGE_TOKEN)
            images.append(entry.crop)
        lines.append(f"{name} at {format_box(entry.box_xyxy, width, height, cfg.coord_decimals)}")
    if cfg.relations:
        lines += relation_lines(vwm.entries, cfg.max_relations)
    lines.append(question)
    return "\n".join(lines), images


def relation_lines(entries: Sequence[VWMEntry], limit: int) -> list[str]:
    """``"{a} is left|right of and above|below {b}"`` for pairs ``a`` before ``b`` of the found
    entries (box centres; ties read as left / above), at most ``limit`` lines."""
    found = [e for e in entries if e.box_xyxy is not None]  # a failed search carries no box
    out: list[str] = []
    for i, a in enumerate(found):
        for b in found[i + 1:]:
            if len(out) >= limit:
                return out
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box_xyxy, b.box_xyxy
            side = "left" if ax0 + ax1 <= bx0 + bx1 else "right"
            level = "above" if ay0 + ay1 <= by0 + by1 else "below"
            out.append(f"{_sanitize(a.name)} is {side} of and {level} {_sanitize(b.name)}")
    return out


def format_box(box_xyxy: Sequence[float], width: int, height: int, decimals: int = 3) -> str:
    """``"[x1, y1, x2, y2]"``: a full-image pixel box normalised to ``[0, 1]`` by the image size."""
    norm = normalize_xyxy(box_xyxy, width, height).clip(0.0, 1.0)
    return "[" + ", ".join(f"{v:.{decimals}f}" for v in norm) + "]"


def _sanitize(text: str) -> str:
    """One-line target name without image placeholders (they would desynchronise images and tokens)."""
    return " ".join(text.replace(IMAGE_TOKEN, "image").split())
