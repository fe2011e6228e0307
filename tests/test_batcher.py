"""The dynamic batcher on its own (no server): batch formation, the wait for company, dropped jobs, one bad
image failing alone, draining on close. A real detector (Yolo-Fastest 1.1) runs every batch."""

from __future__ import annotations

import asyncio

import pytest

from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import InvalidImageError
from hebbian_mirror.images import decode_image
from hebbian_mirror.server.batcher import BatchStats, DynamicBatcher, QueueFullError

from .conftest import COCO_VAL, DOG, SHARED, detector

IMAGES = sorted((COCO_VAL / "images").glob("*.jpg"))[:8]
HOSTILE = sorted((SHARED / "data" / "hostile").glob("*-*"))
OPTIONS = DetectOptions(conf=0.3)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def make(**kwargs) -> tuple[DynamicBatcher, list[BatchStats]]:
    stats: list[BatchStats] = []
    batcher = DynamicBatcher(detector("yolo-fastest-1.1"), on_batch=stats.append, **kwargs)
    batcher.start()
    return batcher, stats


def test_queued_requests_run_together_each_with_its_own_result():
    async def go():
        batcher, stats = make(max_batch_size=4)
        futures = [await batcher.submit(p.read_bytes(), OPTIONS) for p in IMAGES]  # queued before the worker runs
        results = await asyncio.gather(*futures)
        await batcher.close()
        return results, stats

    results, stats = run(go())
    assert [s.size for s in stats] == [4, 4]
    alone = detector("yolo-fastest-1.1").detect([decode_image(p) for p in IMAGES], OPTIONS)
    for result, expected in zip(results, alone, strict=True):
        assert [(d.label, d.box) for d in result.detections] == [(d.label, d.box) for d in expected]
        assert result.batch_size == 4


def test_a_lone_request_waits_for_company_only_while_some_is_on_its_way():
    async def go():
        batcher, _ = make(max_batch_delay=0.3)
        alone = await (await batcher.submit(DOG.read_bytes(), OPTIONS))
        async with batcher.arriving():  # another request is being read and never arrives
            waited = await (await batcher.submit(DOG.read_bytes(), OPTIONS))
        await batcher.close()
        return alone, waited

    alone, waited = run(go())
    assert alone.queue_ms < 250  # nobody on the way: it ran at once
    assert 290 <= waited.queue_ms < 3000  # held for the batch delay, then run without the missing company
    assert [d.label for d in waited.detections] == [d.label for d in alone.detections]


def test_requests_that_gave_up_are_dropped_unrun():
    async def go():
        batcher, stats = make(max_batch_size=8)
        first = await batcher.submit(IMAGES[0].read_bytes(), OPTIONS)
        await asyncio.sleep(0.05)  # the worker has taken it
        gone = await batcher.submit(IMAGES[1].read_bytes(), OPTIONS)
        kept = await batcher.submit(IMAGES[2].read_bytes(), OPTIONS)
        gone.cancel()  # the client timed out or hung up
        await first
        result = await kept
        await batcher.close()
        return result, stats

    result, stats = run(go())
    assert result.batch_size == 1
    assert sum(s.dropped for s in stats) == 1 and sum(s.size for s in stats) == 2


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda p: p.name)
def test_a_bad_image_fails_alone_and_its_batch_mates_succeed(hostile):
    async def go():
        batcher, stats = make(max_batch_size=8)
        good = [await batcher.submit(p.read_bytes(), OPTIONS) for p in IMAGES[:3]]
        bad = await batcher.submit(hostile.read_bytes(), OPTIONS)
        garbage = await batcher.submit(b"\xff\xd8\xff not really a jpeg", OPTIONS)
        results = await asyncio.gather(*good, bad, garbage, return_exceptions=True)
        await batcher.close()
        return results, stats

    results, stats = run(go())
    assert len(HOSTILE) == 5
    assert [s.size for s in stats] == [5]  # all in one batch
    assert all(not isinstance(r, Exception) and r.detections for r in results[:3]), results
    assert all(isinstance(r, InvalidImageError) for r in results[3:]), results


def test_close_drains_the_queue_and_then_refuses():
    async def go():
        batcher, _ = make(max_batch_size=2, max_queue=6)
        futures = [await batcher.submit(p.read_bytes(), OPTIONS) for p in IMAGES[:6]]
        with pytest.raises(QueueFullError, match="6 requests queued"):
            await batcher.submit(DOG.read_bytes(), OPTIONS)
        await batcher.close()
        assert all(f.done() and not f.exception() for f in futures)
        with pytest.raises(QueueFullError, match="shutting down"):
            await batcher.submit(DOG.read_bytes(), OPTIONS)
        return [f.result() for f in futures]

    results = run(go())
    assert len(results) == 6 and all(r.detections for r in results[:1])
