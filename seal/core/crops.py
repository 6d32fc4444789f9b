"""Crop extraction for the visual working memory: square context crops, letterboxed, never stretched.

Frames and formats: boxes are ``xyxy`` in full-image pixels (upright image, x right, y down).
A crop is taken around a found object's box:

1. the crop *region* is a square centred on the box, of side
   ``max(scale * max(box_w, box_h), min_side)`` (so a tiny box still gets ``min_side`` pixels of
   context), shifted to stay inside the image when it fits, clipped to the image when it does not;
2. the region is cut out and *letterboxed* to an ``out_side x out_side`` square: scaled by one
   factor (aspect kept) and centred on a :data:`PAD_RGB` background.

The mapping between the full image and the crop is a :class:`seal.core.geometry.Frame`, returned with
the crop so boxes can be drawn in (or read back from) the crop's frame.
(The reference took a 1.2x box crop, clamped it, and stretched it to 224x224 with no minimum size.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from seal.core.geometry import Frame, clip_xyxy

PAD_RGB: tuple[int, int, int] = (122, 116, 104)
"""Letterbox fill: the CLIP mean colour, as the LLaVA image processor pads (``int(mean * 255)``)."""


@dataclass(frozen=True)
class Crop:
    """A letterboxed square crop and where it came from.

    Attributes:
        image: RGB PIL image of size ``(out_side, out_side)``.
        region_xyxy: the cut-out region, full-image pixels (integers, inside the image).
        frame: maps full-image pixel boxes into crop pixels (``frame.full_to_input_xyxy``).
    """

    image: Image.Image
    region_xyxy: tuple[int, int, int, int]
    frame: Frame


def crop_region_xyxy(box_xyxy: Sequence[float], image_w: int, image_h: int,
                     scale: float, min_side: float) -> tuple[int, int, int, int]:
    """The square context region around ``box_xyxy`` (full-image px), as integer ``xyxy`` in the image.

    Side ``s = max(scale * max(box_w, box_h), min_side)``, centred on the box centre; on each axis
    the square is shifted to stay inside the image when ``s`` fits, else it covers the whole axis.
    The region always contains the (clipped) box.
    """
    if image_w < 1 or image_h < 1:
        raise ValueError(f"image size must be positive, found {image_w}x{image_h}")
    x1, y1, x2, y2 = (float(v) for v in clip_xyxy(box_xyxy, image_w, image_h))
    side = max(scale * max(x2 - x1, y2 - y1), float(min_side), 1.0)
    lo_x, hi_x = _place(0.5 * (x1 + x2), side, image_w)
    lo_y, hi_y = _place(0.5 * (y1 + y2), side, image_h)
    # round outwards to whole pixels, keeping the (clipped) box inside
    rx1, ry1 = max(0, math.floor(min(lo_x, x1))), max(0, math.floor(min(lo_y, y1)))
    rx2, ry2 = min(image_w, math.ceil(max(hi_x, x2))), min(image_h, math.ceil(max(hi_y, y2)))
    rx2, ry2 = max(rx2, rx1 + 1), max(ry2, ry1 + 1)
    return rx1, ry1, rx2, ry2


def _place(center: float, side: float, length: int) -> tuple[float, float]:
    """Interval of ``side`` centred on ``center``, shifted inside ``[0, length]``, clipped if too long."""
    if side >= length:
        return 0.0, float(length)
    lo = min(max(center - side / 2, 0.0), length - side)
    return lo, lo + side


def letterbox(image: Image.Image, out_side: int, fill: tuple[int, int, int] = PAD_RGB) -> tuple[Image.Image, Frame]:
    """Scale ``image`` by one factor to fit ``out_side x out_side`` and centre it on ``fill``.

    Returns:
        ``(square RGB image, frame)`` where ``frame`` maps the input image's pixels
        (region ``(0, 0, w, h)``) to the square's pixels.
    """
    w, h = image.size
    frame = Frame((0.0, 0.0, float(w), float(h)), out_side, out_side, letterbox=True)
    return _paste(image, frame, fill), frame


def extract_crop(image: Image.Image, box_xyxy: Sequence[float], scale: float, min_side: float,
                 out_side: int, fill: tuple[int, int, int] = PAD_RGB) -> Crop:
    """Cut the context region of ``box_xyxy`` (full-image px) out of ``image`` and letterbox it.

    Args:
        image: the full RGB image.
        box_xyxy: the object's box in full-image pixels.
        scale: region side / the box's longer side.
        min_side: minimum region side (pixels of the full image).
        out_side: side of the returned square crop (pixels).
        fill: padding colour.
    """
    w, h = image.size
    region = crop_region_xyxy(box_xyxy, w, h, scale, min_side)
    frame = Frame(tuple(float(v) for v in region), out_side, out_side, letterbox=True)
    return Crop(image=_paste(image.crop(region), frame, fill), region_xyxy=region, frame=frame)


def _paste(patch: Image.Image, frame: Frame, fill: tuple[int, int, int]) -> Image.Image:
    """Resize ``patch`` (the frame's region) by the frame's scale and paste it at the frame's padding."""
    sx, _ = frame.scale_xy
    px, py = frame.pad_xy
    new_w = max(1, min(frame.input_w, round(frame.region_w * sx)))
    new_h = max(1, min(frame.input_h, round(frame.region_h * sx)))
    resized = patch.convert("RGB").resize((new_w, new_h), Image.BICUBIC)
    canvas = Image.new("RGB", (frame.input_w, frame.input_h), fill)
    canvas.paste(resized, (int(round(px)), int(round(py))))
    return canvas
