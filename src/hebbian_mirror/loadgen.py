"""An async HTTP load generator: N clients post the same image for a fixed time.

It runs on aiohttp, whose C HTTP parser costs the client a fraction of the CPU a pure-Python client needs: when
the load generator shares the machine with the server, every millisecond it spends is taken from the server
it measures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    status_counts: dict[int | str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def upload_field(route: str) -> str | None:
    """The multipart field ``route`` takes its image in (DeepStack: ``image``, the weapons demo: ``file``), or
    ``None`` when the image is the raw body."""
    if route.startswith("/v1/vision/"):
        return "image"
    if route == "/predict":
        return "file"
    return None


def _body(route: str, image: bytes, filename: str) -> aiohttp.FormData | bytes:
    field = upload_field(route)
    if field is None:
        return image
    form = aiohttp.FormData()
    form.add_field(field, image, filename=filename, content_type="image/jpeg")
    return form


async def run_load(
    url: str,
    image: Path,
    concurrency: int,
    duration: float,
    route: str = "/v1/detect",
    headers: dict[str, str] | None = None,
    warmup: float = 1.0,
    honor_retry_after: bool = False,
) -> LoadResult:
    """``concurrency`` clients in a closed loop for ``warmup + duration`` s; only the last ``duration`` counts.
    With ``honor_retry_after`` a client told 503 waits the ``Retry-After`` seconds before its next request, as
    a well-behaved client does; without, it asks again at once."""
    body = image.read_bytes()
    raw = upload_field(route) is None
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = (headers or {}) | ({"Content-Type": "image/jpeg"} if raw else {})
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=headers) as session:

        async def worker() -> None:
            while (now := time.perf_counter()) < stop_at:
                pause = 0.0
                try:
                    async with session.post(route, data=_body(route, body, image.name)) as r:
                        await r.read()
                        key: int | str = r.status
                        if key == 503 and honor_retry_after:
                            pause = float(r.headers.get("Retry-After", "1"))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    key = type(exc).__name__
                    pause = 0.1  # a refused or reset connection: do not spin
                done = time.perf_counter()
                if now >= measure_from:
                    statuses[key] = statuses.get(key, 0) + 1
                    if key == 200:
                        latencies.append(done - now)
                if pause:
                    await asyncio.sleep(min(pause, max(stop_at - time.perf_counter(), 0.0)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    total = sum(statuses.values())
    ok = len(latencies)
    pct = np.percentile(latencies, [50, 95, 99]) * 1000 if latencies else [float("nan")] * 3
    return LoadResult(concurrency, total, total - ok, elapsed, ok / elapsed, *map(float, pct), statuses)
