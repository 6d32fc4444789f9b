"""``ImageSource``: pixel access for the search, without float copies of the full image.

The image is held once as an 8-bit RGB PIL image. Localizers ask for a region resampled to their
input size (:meth:`ImageSource.crop_resized`); only that small patch is ever turned into an array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seal.core.geometry import Frame


class ImageSource:
    """One upright RGB image, addressed in full-image pixels."""

    def __init__(self, image: Image.Image, path: str | None = None) -> None:
        if image.mode != "RGB":
            raise ValueError(f"ImageSource expects an RGB image, got mode {image.mode!r}")
        self.image = image
        self.path = path

    @classmethod
    def from_path(cls, path: str | Path, max_pixels: int | None = None) -> "ImageSource":
        from seal.core.image_io import DEFAULT_MAX_PIXELS, load_image

        return cls(load_image(path, max_pixels or DEFAULT_MAX_PIXELS), str(path))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.image.size

    @property
    def width(self) -> int:
        return self.image.size[0]

    @property
    def height(self) -> int:
        return self.image.size[1]

    def full_box(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, float(self.width), float(self.height))

    def crop_resized(
        self, region_xyxy: tuple[float, float, float, float], out_w: int, out_h: int, letterbox: bool = True,
        fill: tuple[int, int, int] = (0, 0, 0),
    ) -> tuple[np.ndarray, Frame]:
        """Resample ``region_xyxy`` (full-image pixels) to an ``(out_h, out_w, 3)`` uint8 array.

        Returns the array and the :class:`Frame` that maps full-image boxes into it.
        """
        frame = Frame(tuple(float(v) for v in region_xyxy), out_w, out_h, letterbox)  # type: ignore[arg-type]
        x0, y0, x1, y1 = frame.region_xyxy
        sx, sy = frame.scale_xy
        tw, th = max(1, round(frame.region_w * sx)), max(1, round(frame.region_h * sy))
        # reducing_gap keeps big downscales cheap: PIL first box-reduces by an integer factor.
        patch = self.image.resize((tw, th), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1), reducing_gap=3.0)
        if (tw, th) == (out_w, out_h):
            return np.asarray(patch), frame
        canvas = Image.new("RGB", (out_w, out_h), fill)
        px, py = frame.pad_xy
        canvas.paste(patch, (int(round(px)), int(round(py))))
        return np.asarray(canvas), frame
