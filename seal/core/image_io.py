"""Robust image loading: one place that turns any file a user hands us into an upright RGB image.

Every failure (missing, empty, truncated, corrupt, not an image, too many pixels) becomes an
:class:`~seal.core.errors.InputError` naming the file. Odd but valid images are normalised:
16-bit and float greyscale are rescaled to 8 bits, CMYK / palette / greyscale / alpha images become
RGB (alpha composited on white), and EXIF orientation is applied so that every box we report lives
in the upright frame a person sees.

Images stay ``uint8`` PIL images (3 bytes per pixel); nothing here makes a float copy, so a
16K x 16K image costs ~768 MB, not 3 GB.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seal.core.errors import ConfigError, InputError

DEFAULT_MAX_PIXELS = 300_000_000
"""Default decompression-bomb limit (pixels). 16K x 16K = 268M fits; override per call/config."""


@dataclass
class ImageConfig:
    """The ``image`` section: how user images are loaded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    """Refuse images with more pixels than this (decompression-bomb guard)."""

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f"image.max_pixels: expected >= 1, found {self.max_pixels}")


def image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Upright ``(width, height)`` of an image, reading only its header.

    Raises:
        InputError: missing / unreadable / not an image / above ``max_pixels``.
    """
    with _open(path, max_pixels) as img:
        w, h = img.size
        if _exif_swaps_axes(img):
            w, h = h, w
        return w, h


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file into an upright ``RGB`` ``uint8`` PIL image.

    Args:
        path: image file.
        max_pixels: refuse images with more than this many pixels (decompression bombs).

    Returns:
        PIL image, mode ``RGB``, size ``(W, H)`` in the upright (EXIF-applied) frame.

    Raises:
        InputError: naming ``path`` and the problem.
    """
    with _open(path, max_pixels) as img:
        try:
            img.load()
            # exif_transpose copies the image even when nothing turns; skip it for upright files.
            upright = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
            return to_rgb(upright)
        except InputError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InputError(f"cannot decode image ({_describe(exc)})", path) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit / float rescaled, alpha composited on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        grey = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


_PIL_OPEN = Image.open
"""PIL's own opener, taken before another library patches ``Image.open`` (ultralytics replaces it
with one that pip-installs a HEIF plugin when a file is not an image)."""


def _open(path: str | Path, max_pixels: int) -> Image.Image:
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", p)
    if p.is_dir():
        raise InputError("is a directory, expected an image file", p)
    if p.stat().st_size == 0:
        raise InputError("empty file, expected an image", p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit below, with a clear message
            try:
                img = _PIL_OPEN(p)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (UnidentifiedImageError, ImportError):  # ImportError: a patched opener's missing plugin
        raise InputError("not a recognised image format", p) from None
    except OSError as exc:
        raise InputError(f"cannot read image ({_describe(exc)})", p) from None
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise InputError(f"image has an empty size {w}x{h}", p)
    if w * h > max_pixels:
        img.close()
        raise InputError(
            f"image has {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
            "(possible decompression bomb; raise image.max_pixels to allow it)",
            p,
        )
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF is ignored, exactly as exif_transpose would
        return 1


def _exif_swaps_axes(img: Image.Image) -> bool:
    return _orientation(img) in (5, 6, 7, 8)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
