"""Pictures for tests of inline reference images."""

from __future__ import annotations

import base64
import io
import random

from PIL import Image


def noisy_picture(width: int, height: int, fmt: str) -> bytes:
    """A picture that compresses badly, so its file is large for its size in pixels."""
    rng = random.Random(f"{width}x{height}")
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def data_url(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"
