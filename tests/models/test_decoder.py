"""The server's decoder on its own: every hostile file is its own error, a runaway decode is abandoned at its
budget without holding up the next image, and decoded pixels in flight stay under the budget."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from PIL import Image

from hebbian_mirror.errors import HebbianMirrorError, ImageTooLargeError, InvalidImageError
from hebbian_mirror.images import MAX_JPEG_SCANS, decode_image
from hebbian_mirror.server.decoder import SPARE_THREADS, Decoder, PixelBudget
from hebbian_mirror.server.errors import APIError

from ..conftest import DOG, SHARED
from ..helpers import encode, huge_png, scan_bomb

HOSTILE = sorted((SHARED / "data" / "hostile").glob("*-*"))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def decode(decoder: Decoder, data: bytes, timeout: float = 60.0) -> np.ndarray:
    async with decoder.decoded(data, time.perf_counter() + timeout) as image:
        return image


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda p: p.name)
def test_each_hostile_file_is_an_invalid_image(hostile):
    async def go():
        decoder = Decoder(1, 10.0, 40_000_000, 40_000_000)
        with pytest.raises(InvalidImageError):
            await decode(decoder, hostile.read_bytes())
        return await decode(decoder, DOG.read_bytes())  # and the decoder is fine after it

    assert len(HOSTILE) == 5
    assert run(go()).shape == (576, 768, 3)


def test_scan_bombs_are_refused_before_decoding_and_normal_progressive_jpegs_pass():
    bomb = scan_bomb(2000, 2000, 3000)  # about 10 s of decoding on a CI core
    started = time.perf_counter()
    with pytest.raises(InvalidImageError, match=r"3,00[0-9] scans"):
        decode_image(bomb)
    assert time.perf_counter() - started < 0.5
    fine = scan_bomb(640, 480, MAX_JPEG_SCANS - 20)  # many scans, but within the limit
    assert decode_image(fine).shape == (480, 640, 3)
    progressive = encode(Image.open(DOG), "JPEG", progressive=True)
    np.testing.assert_allclose(decode_image(progressive).mean(), decode_image(DOG).mean(), atol=1.0)


def test_a_decode_past_its_budget_is_abandoned_and_the_next_image_is_not_held_up():
    slow = scan_bomb(6000, 6000, MAX_JPEG_SCANS - 12)  # within every limit (36 Mpx), over a second to decode
    started = time.perf_counter()
    decode_image(slow)
    alone = time.perf_counter() - started
    assert alone > 0.6, f"the slow image decoded in {alone:.2f} s: not slow enough to test the budget"

    async def go():
        decoder = Decoder(1, 0.3, 40_000_000, 200_000_000)
        runaways = await asyncio.gather(*(decode(decoder, slow) for _ in range(SPARE_THREADS)), return_exceptions=True)
        still_running = decoder.abandoned
        begin = time.perf_counter()
        dog = await decode(decoder, DOG.read_bytes())
        took = time.perf_counter() - begin
        decoder.close()
        return runaways, still_running, dog, took

    runaways, still_running, dog, took = run(go())
    assert all(isinstance(r, APIError) and r.status == 422 and "0.3 s to decode" in r.message for r in runaways)
    assert still_running >= 1  # their threads were still decoding when the next image came
    assert dog.shape == (576, 768, 3)
    assert took < alone / 2, f"the dog took {took:.2f} s behind runaways that take {alone:.2f} s"


def test_limits_and_errors_are_the_requests_own():
    async def go():
        decoder = Decoder(2, 10.0, 1_000_000, 2_000_000)
        outcomes = await asyncio.gather(
            decode(decoder, huge_png(6000, 6000)),
            decode(decoder, b"\xff\xd8\xff not a jpeg"),
            decode(decoder, b""),
            decode(decoder, encode(Image.new("RGB", (800, 600), "red"), "PNG")),
            return_exceptions=True,
        )
        return outcomes

    too_large, garbage, empty, fine = run(go())
    assert isinstance(too_large, ImageTooLargeError) and "36,000,000 pixels" in str(too_large)
    assert isinstance(garbage, InvalidImageError) and isinstance(empty, InvalidImageError)
    assert isinstance(fine, np.ndarray) and fine.shape == (600, 800, 3)
    assert not any(isinstance(o, Exception) and not isinstance(o, HebbianMirrorError) for o in (too_large, garbage))


def test_decoded_pixels_in_flight_stay_under_the_budget():
    png = encode(Image.new("RGB", (1000, 1000), "blue"), "PNG")  # one megapixel, 5 KB on the wire

    async def go():
        decoder = Decoder(4, 10.0, 1_000_000, 2_500_000)  # room for two at a time
        peak = 0

        async def request() -> None:
            nonlocal peak
            async with decoder.decoded(png, time.perf_counter() + 30) as image:
                peak = max(peak, decoder.pixels.used)
                assert image.shape == (1000, 1000, 3)
                await asyncio.sleep(0.05)  # the request's time in the queue and the model

        await asyncio.gather(*(request() for _ in range(12)))
        return peak, decoder.pixels.used

    peak, after = run(go())
    assert peak == 2_000_000 and after == 0


def test_a_spent_pixel_budget_answers_503_at_the_deadline():
    async def go():
        budget = PixelBudget(1_000)
        async with budget.hold(800, time.perf_counter() + 1):
            with pytest.raises(APIError) as busy:
                async with budget.hold(500, time.perf_counter() + 0.2):
                    pass
        async with budget.hold(1_000, time.perf_counter() + 0.2):  # free again
            pass
        return busy.value

    busy = run(go())
    assert busy.status == 503 and busy.headers["Retry-After"] == "1"
