"""Images embedded in benchmark files: base64 text -> bytes -> upright RGB PIL image.

The in-memory twin of :func:`seal.core.image_io.load_image` (which reads files): the same guarantees
(decompression-bomb limit, EXIF orientation applied, any mode converted to ``RGB`` ``uint8``) and
every failure an :class:`~seal.core.errors.InputError` naming where the image came from, e.g.
``MMBench_DEV_EN.tsv: line 12: column 'image': ...``.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from seal.core.errors import InputError
from seal.core.image_io import DEFAULT_MAX_PIXELS, to_rgb


def decode_base64(text: str, source: str | Path | None = None, where: str = "image") -> bytes:
    """Strict base64 -> bytes (whitespace ignored).

    Args:
        text: the base64 text (standard alphabet, padded).
        source: the file it came from (named in errors).
        where: what it is, e.g. ``"line 12: column 'image'"`` (named in errors).

    Raises:
        InputError: characters outside the base64 alphabet, bad padding (a truncated field) or empty data.
    """
    compact = "".join(text.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}: not valid base64 ({exc}; {len(compact)} chars)", source) from None
    if not data:
        raise InputError(f"{where}: empty image data", source)
    return data


def looks_like_base64(text: str) -> bool:
    """A cheap shape check done while streaming: padded base64 has a length divisible by 4.

    Catches most truncated fields without decoding; :func:`decode_base64` is the full check.
    """
    core = text.strip()
    n = len(core) - sum(core.count(c) for c in " \t\r\n")  # counting copies nothing
    return n > 0 and n % 4 == 0


def image_from_bytes(data: bytes, source: str | Path | None = None, where: str = "image",
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, ...) into an upright ``RGB`` ``uint8`` PIL image.

    Args:
        data: the encoded file contents.
        source, where: named in errors (see :func:`decode_base64`).
        max_pixels: refuse images with more pixels (decompression bombs).

    Returns:
        PIL image, mode ``RGB``, size ``(W, H)`` in the upright (EXIF-applied) frame.

    Raises:
        InputError: not an image, corrupt/truncated data, empty size or above ``max_pixels``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clear message
            try:
                img = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError:
        raise InputError(f"{where}: not a recognised image format ({len(data)} bytes)", source) from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read image ({_first_line(exc)})", source) from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: image has an empty size {w}x{h}", source)
    if w * h > max_pixels:
        raise InputError(f"{where}: image has {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
                         "(possible decompression bomb; raise image.max_pixels to allow it)", source)
    try:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: cannot decode image ({_first_line(exc)})", source) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
