"""The simulated object store: result URLs and the small files behind them."""

from __future__ import annotations

import hashlib
import struct
import zlib

from sim.catalogue import Output

OSS_PREFIX = "/oss"


def file_names(output: Output, count: int) -> list[str]:
    """The file names a succeeded task publishes."""
    if output is Output.VIDEO:
        return [f"{n}.mp4" for n in range(count)]
    if output in (Output.GRID, Output.SINGLE):
        return ["0.png"]
    return [f"{n}.png" for n in range(count)]


def file_url(public_base: str, task_id: str, name: str) -> str:
    """Absolute URL of one result file."""
    return f"{public_base.rstrip('/')}{OSS_PREFIX}/{task_id}/{name}"


def png_bytes(task_id: str, name: str, size: int = 8) -> bytes:
    """A valid ``size``x``size`` one-colour PNG whose colour depends on the task and file."""
    red, green, blue = hashlib.sha256(f"{task_id}/{name}".encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * size))
        + _chunk(b"IEND", b"")
    )


def mp4_bytes(task_id: str) -> bytes:
    """An MP4-shaped file: an ``ftyp`` box and an ``mdat`` box naming the task."""
    ftyp = b"isom" + struct.pack(">I", 512) + b"isomiso2mp41"
    mdat = f"simulated clip {task_id}".encode()
    return _box(b"ftyp", ftyp) + _box(b"mdat", mdat)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload
