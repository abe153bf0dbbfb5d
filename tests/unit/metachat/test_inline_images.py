"""Inline reference images: refused early when unreadable, sent in the public clients' shape and
small enough that MetaChat does not answer 413."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from metachat import SpecError, SubmitRequest, build_catalogue
from metachat.images import MAX_INLINE_BYTES
from tests.support.pictures import data_url, noisy_picture
from tests.unit.metachat.conftest import Upstream, make_client

pytestmark = pytest.mark.anyio


def submitted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "Success", "data": {"id": "t"}})


async def sent_image(url: str) -> dict[str, Any]:
    upstream = Upstream(submitted)
    await make_client(upstream).submit(
        SubmitRequest("flux-2-pro", "generate", prompt="p", images=[{"url": url}])
    )
    entry: dict[str, Any] = upstream.last_json()["images"][0]
    return entry


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")], ids=["png", "jpeg"]
)
async def test_a_large_inline_image_is_shrunk_below_the_safe_size_keeping_its_shape(
    fmt: str, mime: str
) -> None:
    raw = noisy_picture(1200, 800, fmt)
    assert len(raw) > 2 * MAX_INLINE_BYTES

    entry = await sent_image(data_url(raw, mime))

    assert list(entry) == ["type", "size", "w", "h", "b64"]
    assert entry["type"] == mime
    prefix = f"data:{mime};base64,"
    assert entry["b64"].startswith(prefix)
    sent = base64.b64decode(entry["b64"].removeprefix(prefix))
    assert entry["size"] == len(sent) <= MAX_INLINE_BYTES
    with Image.open(io.BytesIO(sent)) as picture:
        assert picture.size == (entry["w"], entry["h"])
        assert picture.format == fmt
    assert entry["w"] < 1200
    assert abs(entry["w"] / entry["h"] - 1.5) < 0.02


async def test_a_small_inline_image_goes_unchanged_with_its_size_in_pixels() -> None:
    raw = noisy_picture(64, 32, "PNG")
    url = data_url(raw, "image/png")
    entry = await sent_image(url)
    assert entry == {"type": "image/png", "size": len(raw), "w": 64, "h": 32, "b64": url}


def _validate(url: str) -> None:
    build_catalogue().validate(
        model="flux-2-pro",
        action=None,
        prompt="p",
        params={},
        images=[{"url": url}],
        has_source=False,
        source_index=None,
    )


def _huge_blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not a picture at all", "is not a readable png, jpeg, webp or gif image"),
        (_huge_blank_png(), "has more than 40,000,000 pixels"),
    ],
    ids=["not-an-image", "too-many-pixels"],
)
def test_an_inline_image_that_cannot_be_sent_is_refused_with_a_pointer(
    raw: bytes, message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        _validate(data_url(raw, "image/png"))
    assert caught.value.errors == [(("images", 0, "url"), message)]
