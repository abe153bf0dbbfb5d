"""Inline reference images: checked when a job arrives, shrunk to what MetaChat takes when sent.

A public client that sends FLUX references as base64 found that MetaChat answers 413 to large
bodies and keeps each image at about 420 KB; it sends ``{type, size, w, h, b64}`` with ``b64``
the whole data URL. `upstream_entry` builds that shape, scaling the picture down (never up)
until it fits. Decoding is CPU work: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

MAX_INLINE_BYTES = 420_000
"""The most bytes one inline image is sent with (the size a live client found safe)."""

MAX_PIXELS = 40_000_000
"""Larger pictures are refused when the job arrives: decoding one would take too much memory."""

# Below this the picture is useless as a reference; a 256-pixel PNG always fits the limit anyway.
MIN_SIDE = 256
SHRINK_STEP = 0.8
JPEG_QUALITY = 85

_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "PNG"}
_MIME_OF = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class InlineImage:
    """What is sent for one inline image: its bytes, type and size in pixels (None if unknown)."""

    data: bytes
    mime: str
    width: int | None
    height: int | None


def image_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be used as a reference image, or None. Reads the header only."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
    except (*_READ_ERRORS, Image.DecompressionBombWarning):
        return "is not a readable png, jpeg, webp or gif image"
    if width * height > MAX_PIXELS:
        return f"has more than {MAX_PIXELS:,} pixels"
    return None


def fit_for_upstream(raw: bytes, mime: str, *, limit: int = MAX_INLINE_BYTES) -> InlineImage:
    """The image as it will be sent: unchanged when it fits ``limit``, else scaled down and
    re-encoded in its own format (a GIF becomes a PNG) until it does or reaches `MIN_SIDE`.

    Bytes Pillow cannot read go as they are, without a size: MetaChat is the judge of them.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if len(raw) <= limit:
                return InlineImage(raw, mime, width, height)
            image.load()
    except (*_READ_ERRORS, Image.DecompressionBombWarning):
        return InlineImage(raw, mime, None, None)
    return _shrunk(image, _FORMATS.get(mime, "PNG"), limit, original_bytes=len(raw))


def _shrunk(image: Image.Image, fmt: str, limit: int, *, original_bytes: int) -> InlineImage:
    longest = max(image.size)
    # Bytes grow roughly with area: start near the size that should fit, then step down.
    side = min(longest, max(MIN_SIDE, int(longest * math.sqrt(limit / original_bytes))))
    while True:
        scaled = _scaled(image, side)
        data = _encode(scaled, fmt)
        if len(data) <= limit or side <= MIN_SIDE:
            return InlineImage(data, _MIME_OF[fmt], scaled.width, scaled.height)
        side = max(MIN_SIDE, int(side * SHRINK_STEP))


def _scaled(image: Image.Image, side: int) -> Image.Image:
    width, height = image.size
    ratio = side / max(width, height)
    if ratio >= 1:
        return image
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt == "WEBP":
        mode = "RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"
        image.convert(mode).save(out, "WEBP", quality=JPEG_QUALITY)
    else:
        mode = image.mode if image.mode in ("RGB", "RGBA", "L", "LA", "P") else "RGBA"
        image.convert(mode).save(out, "PNG", optimize=True)
    return out.getvalue()
