"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """``img`` encoded as ``fmt`` (JPEG, PNG, ...)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A valid progressive JPEG whose last (cheap) scan is repeated ``scans`` times: small on the wire, and every
    repeat is one more pass of the decoder over every pixel."""
    data = encode(Image.new("RGB", (width, height), (90, 120, 150)), "JPEG", progressive=True, quality=50)
    last = data.rfind(b"\xff\xda")
    scan = data[last:-2]  # the last scan: its header and entropy-coded data, up to EOI
    return data[:-2] + scan * (scans - 1) + b"\xff\xd9"


def disjoint(rects) -> bool:
    """No two of the ``(x1, y1, x2, y2)`` rectangles overlap."""
    return all(
        a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1] for i, a in enumerate(rects) for b in rects[:i]
    )
