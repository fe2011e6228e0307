"""The dynamic batcher on its own (no server): batch formation, the wait for company, dropped jobs, admission,
draining on close. A real detector (Yolo-Fastest 1.1) runs every batch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import DecodeTimeoutError, ImageTooLargeError, InvalidImageError, QueueFullError
from hebbian_mirror.images import decode_image
from hebbian_mirror.serving.batcher import BatchStats, DynamicBatcher
from hebbian_mirror.serving.runners import ThreadRunner, detect_items

from ..conftest import COCO_VAL, DOG, detector
from ..helpers import huge_png, scan_bomb

IMAGES = sorted((COCO_VAL / "images").glob("*.jpg"))[:8]
PIXELS = [decode_image(p) for p in IMAGES]
DOG_PIXELS = decode_image(DOG)
OPTIONS = DetectOptions(conf=0.3)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def make(**kwargs) -> tuple[DynamicBatcher, list[BatchStats]]:
    stats: list[BatchStats] = []
    batcher = DynamicBatcher(ThreadRunner(detector("yolo-fastest-1.1")), on_batch=stats.append, **kwargs)
    batcher.start()
    return batcher, stats


def test_queued_requests_run_together_each_with_its_own_result():
    async def go():
        batcher, stats = make(max_batch_size=4)
        futures = [batcher.submit(p, OPTIONS) for p in PIXELS]  # queued before the worker runs
        results = await asyncio.gather(*futures)
        await batcher.close()
        return results, stats

    results, stats = run(go())
    assert [s.size for s in stats] == [4, 4]
    alone = detector("yolo-fastest-1.1").detect(PIXELS, OPTIONS)
    for result, expected in zip(results, alone, strict=True):
        assert [(d.label, d.box) for d in result.detections] == [(d.label, d.box) for d in expected]
        assert result.batch_size == 4


def test_a_lone_request_waits_for_company_only_while_some_is_on_its_way():
    async def go():
        batcher, _ = make(max_batch_delay=0.3)
        alone = await batcher.submit(DOG_PIXELS, OPTIONS)
        async with batcher.admit():  # another request is admitted and being read, and never arrives
            waited = await batcher.submit(DOG_PIXELS, OPTIONS)
        await batcher.close()
        return alone, waited

    alone, waited = run(go())
    assert alone.queue_ms < 250  # nobody on the way: it ran at once
    assert 290 <= waited.queue_ms < 3000  # held for the batch delay, then run without the missing company
    assert [d.label for d in waited.detections] == [d.label for d in alone.detections]


def test_requests_that_gave_up_are_dropped_unrun():
    async def go():
        batcher, stats = make(max_batch_size=8)
        first = batcher.submit(PIXELS[0], OPTIONS)
        await asyncio.sleep(0.05)  # the worker has taken it
        gone = batcher.submit(PIXELS[1], OPTIONS)
        kept = batcher.submit(PIXELS[2], OPTIONS)
        gone.cancel()  # the client timed out or hung up
        await first
        result = await kept
        await batcher.close()
        return result, stats

    result, stats = run(go())
    assert result.batch_size == 1
    assert sum(s.dropped for s in stats) == 1 and sum(s.size for s in stats) == 2


def test_a_full_queue_waits_about_a_batch_for_a_place_then_refuses_and_close_drains_it():
    async def go():
        runner = ThreadRunner(detector("yolo-fastest-1.1"))
        batcher = DynamicBatcher(runner, max_batch_size=2, max_queue=6)  # not started yet
        futures = [batcher.submit(p, OPTIONS) for p in PIXELS[:5]]
        async with batcher.admit():  # the sixth place: admitted, its body still on its way
            began = asyncio.get_running_loop().time()
            with pytest.raises(QueueFullError, match="6 requests queued") as full:
                async with batcher.admit():
                    pass
            waited = asyncio.get_running_loop().time() - began
            futures.append(batcher.submit(PIXELS[5], OPTIONS))
        batcher.start()  # the worker takes a batch of 2: places free up for a waiting request
        async with batcher.admit():
            futures.append(batcher.submit(PIXELS[6], OPTIONS))
        await batcher.close()
        assert all(f.done() and not f.exception() for f in futures)
        with pytest.raises(QueueFullError, match="shutting down"):
            async with batcher.admit():
                pass
        return [f.result() for f in futures], full.value, waited

    results, full, waited = run(go())
    assert 0.05 <= waited <= 1.0  # about one batch's time (2 × the 0.05 s first estimate per image)
    assert full.retry_after >= 1
    assert len(results) == 7 and all(r.detections for r in results[:1])


def test_freed_places_go_to_waiting_requests_in_arrival_order_and_a_cancelled_one_passes_its_place_on():
    async def go():
        batcher = DynamicBatcher(ThreadRunner(detector("yolo-fastest-1.1")), max_batch_size=1, max_queue=2)
        batcher._seconds_per_image = 0.5  # waits of up to 0.5 s in line
        order: list[str] = []
        release = asyncio.Event()

        async def client(name: str) -> None:
            async with batcher.admit():
                order.append(name)
                await release.wait()

        holders = [asyncio.create_task(client(f"holder{i}")) for i in range(2)]  # the queue's two places
        await asyncio.sleep(0.01)
        first, gone, second = (asyncio.create_task(client(n)) for n in ("first", "gone", "second"))
        await asyncio.sleep(0.01)  # all three wait in line, in this order
        gone.cancel()
        release.set()  # both places free up: they go to first and second, not to the cancelled one
        await asyncio.gather(*holders, first, second)
        assert gone.cancelled()
        assert batcher.incoming == 0 and not batcher._waiters
        late = asyncio.create_task(client("late"))  # nobody in line: admitted at once
        await late
        return order

    assert run(go()) == ["holder0", "holder1", "first", "second", "late"]


def test_a_batch_decodes_where_the_model_runs_and_each_bad_image_is_its_own_error():
    model = detector("yolo-fastest-1.1")
    slow = scan_bomb(4000, 4000, 85)  # within the scan limit, over a second to decode
    items = [DOG.read_bytes(), b"\xff\xd8\xff\xe0 and then nothing", slow, PIXELS[0], huge_png(9000, 9000)]
    with ThreadPoolExecutor(4) as pool:
        out = detect_items(model, items, [OPTIONS] * 5, pool, max_pixels=40_000_000, budget=0.5)
    dog, broken, runaway, pixels, bomb = out
    assert [(d.label, d.box) for d in dog] == [(d.label, d.box) for d in model.detect([DOG_PIXELS], OPTIONS)[0]]
    assert dog.image_size == (DOG_PIXELS.shape[1], DOG_PIXELS.shape[0])
    assert isinstance(broken, InvalidImageError)
    assert isinstance(runaway, DecodeTimeoutError) and "0.5 s to decode" in str(runaway)
    assert pixels.image_size == (PIXELS[0].shape[1], PIXELS[0].shape[0]) and len(pixels)
    assert isinstance(bomb, ImageTooLargeError)


def test_a_runner_in_a_thread_decodes_bytes_for_the_batcher():
    async def go():
        batcher, stats = make(max_batch_size=4)
        results = await asyncio.gather(batcher.submit(DOG.read_bytes(), OPTIONS), batcher.submit(PIXELS[1], OPTIONS))
        bad = batcher.submit(b"not an image", OPTIONS)
        with pytest.raises(InvalidImageError):
            await bad
        await batcher.close()
        return results, stats

    (dog, other), stats = run(go())
    assert dog.size == (768, 576) and any(d.label == "dog" for d in dog.detections)
    assert other.size == (PIXELS[1].shape[1], PIXELS[1].shape[0])
    assert sum(s.size for s in stats) == 3
