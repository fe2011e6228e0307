"""A time-boxed mutation fuzz of ``decode_image``: whatever bytes arrive, the answer is pixels or the product's
own image error, quickly — never another exception, never a long decode.

Seeds are small valid files in every format the server reads plus ``../shared/data/hostile``; each case is
a seed with random bit flips, byte runs, truncation, duplicated slices or enlarged header fields. The run is the
same every time: ``HEBBIAN_MIRROR_FUZZ_CASES`` cases (default 100,000, about 10 s here) drawn from the fixed seed
``HEBBIAN_MIRROR_FUZZ_SEED`` (default 0; set another to explore further). A decode's cost is its thread's CPU
time, so a busy machine does not make a fast case look slow. A failing input is saved next to the test's
temporary files.
"""

from __future__ import annotations

import os
import random
import time

import numpy as np
from PIL import Image

from hebbian_mirror.errors import HebbianMirrorError
from hebbian_mirror.images import decode_image

from ..conftest import SHARED
from ..helpers import encode, scan_bomb

CASES = int(os.environ.get("HEBBIAN_MIRROR_FUZZ_CASES", "100000"))
SEED = int(os.environ.get("HEBBIAN_MIRROR_FUZZ_SEED", "0"))
MAX_PIXELS = 4_000_000
SLOW = 5.0  # seconds: a case slower than this is a finding


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    frames = [Image.new("P", (32, 24), i) for i in range(3)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = [
        encode(photo, "JPEG"),
        encode(photo, "JPEG", progressive=True),
        encode(photo, "PNG"),
        encode(photo.convert("P"), "PNG"),
        encode(photo.convert("RGBA"), "PNG"),
        encode(photo.convert("I;16"), "PNG"),
        gif,
        encode(photo, "WEBP"),
        encode(photo, "TIFF", compression="tiff_deflate"),
        encode(photo, "BMP"),
        encode(photo, "ICO"),
        encode(photo.convert("LA"), "PNG"),
        scan_bomb(64, 48, 20),
    ]
    out += [p.read_bytes() for p in sorted((SHARED / "data" / "hostile").glob("*-*"))]
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(buf)) if buf else 0
        if kind == 0:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # a run of random or extreme bytes
            n = rng.randint(1, 16)
            buf[pos : pos + n] = bytes(rng.choice((0, 0xFF, rng.randrange(256))) for _ in range(n))
        elif kind == 2:  # truncation
            del buf[rng.randint(min(8, len(buf)), len(buf)) :]
        elif kind == 3:  # a slice repeated
            n = rng.randint(1, 256)
            buf[pos:pos] = buf[pos : pos + n] * rng.randint(1, 20)
        elif kind == 4:  # a header field made huge (sizes, offsets, counts live in the first bytes)
            i = rng.randrange(min(64, max(len(buf) - 4, 1)))
            buf[i : i + 4] = rng.choice((b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\xff\xff"))
        else:  # random insertion
            buf[pos:pos] = rng.randbytes(rng.randint(1, 32))
        if not buf:
            break
    return bytes(buf)


def test_decode_image_answers_pixels_or_its_own_error_for_any_bytes(tmp_path):
    seed = SEED
    print(f"fuzz seed {seed}, {CASES} cases")
    rng = random.Random(seed)
    corpus = seeds()
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(CASES):
        case = mutate(rng, rng.choice(corpus))
        started = time.thread_time()
        try:
            image = decode_image(case, MAX_PIXELS)
        except HebbianMirrorError:
            outcomes["refused"] += 1
        except Exception as exc:
            (tmp_path / "finding.bin").write_bytes(case)
            raise AssertionError(f"seed {seed}: {type(exc).__name__} escaped decode_image: {exc}") from exc
        else:
            outcomes["decoded"] += 1
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image.shape
            assert image.shape[0] * image.shape[1] <= MAX_PIXELS
        took = time.thread_time() - started
        if took > SLOW:
            (tmp_path / "finding.bin").write_bytes(case)
            raise AssertionError(f"seed {seed}: a {len(case)}-byte input took {took:.1f} s of CPU to decode")
    print(f"{sum(outcomes.values())} cases: {outcomes}")
    assert outcomes["refused"] > 100 and outcomes["decoded"] > 10, outcomes  # the mutations reached both sides
