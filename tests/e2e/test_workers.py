"""Models in worker processes, seen from outside: a worker killed or hung mid-batch is replaced and only the
requests it held fail; several workers share a model's queue; no worker outlives its server."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from ..conftest import DOG
from ..server_process import ServerProcess

JPEG = {"Content-Type": "image/jpeg"}


def workers(srv: ServerProcess) -> list[dict]:
    (model,) = httpx.get(srv.url + "/v1/models", timeout=10).json()["models"]
    return model["workers"]


def wait_ready(srv: ServerProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(srv.url + "/ready", timeout=10).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready again after {timeout} s:\n{srv.log()}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split(")")[-1].split()[0] != "Z"


def metric(srv: ServerProcess, name: str) -> float:
    lines = httpx.get(srv.url + "/metrics", timeout=10).text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(
        "--workers", "1", "--request-timeout", "3", log=tmp_path_factory.mktemp("workers") / "server.log"
    )
    yield srv
    assert srv.stop(), srv.log()


def test_a_killed_worker_fails_the_batch_it_held_and_everything_after_succeeds(server):
    wait_ready(server)
    (before,) = workers(server)
    restarts = metric(server, "hm_worker_restarts_total")

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:
            os.kill(before["pid"], signal.SIGSTOP)  # the worker takes the first request's batch and holds it
            held = asyncio.ensure_future(ac.post("/v1/detect", content=DOG.read_bytes(), headers=JPEG))
            await asyncio.sleep(0.5)
            os.kill(before["pid"], signal.SIGKILL)
            held_response = await held
            # after the crash (the request timeout is 3 s: sent once the new worker is up)
            while (await ac.get("/ready")).status_code != 200:
                await asyncio.sleep(0.1)
            after = await asyncio.gather(
                *(ac.post("/v1/detect", content=DOG.read_bytes(), headers=JPEG) for _ in range(8))
            )
            return held_response, after

    held, after = asyncio.run(scenario())
    assert held.status_code == 503, held.text
    assert "worker process died (killed by signal 9)" in held.json()["error"] and held.headers["Retry-After"]
    assert [r.status_code for r in after] == [200] * 8
    assert all(any(d["label"] == "dog" for d in r.json()["detections"]) for r in after)
    (now,) = workers(server)
    assert now["pid"] != before["pid"] and now["up"] and now["restarts"] == before["restarts"] + 1
    assert not alive(before["pid"])
    assert metric(server, "hm_worker_restarts_total") == restarts + 1
    assert "died (killed by signal 9): restarting it" in server.log()


def test_readiness_says_restarting_while_a_worker_comes_back(server):
    wait_ready(server)
    (before,) = workers(server)
    os.kill(before["pid"], signal.SIGKILL)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = httpx.get(server.url + "/ready", timeout=10)
        seen.add((r.status_code, r.json()["models"]["yolov4-tiny"]))
        if r.status_code == 200 and (503, "restarting") in seen:
            break
        time.sleep(0.05)
    assert (503, "restarting") in seen and (200, "ready") in seen, seen
    assert httpx.post(server.url + "/v1/detect", content=DOG.read_bytes(), headers=JPEG, timeout=60).status_code == 200


def test_a_hung_worker_is_killed_after_the_request_timeout_and_replaced(server):
    wait_ready(server)
    (before,) = workers(server)
    os.kill(before["pid"], signal.SIGSTOP)  # hangs: never answers, never dies
    started = time.monotonic()
    r = httpx.post(server.url + "/v1/detect", content=DOG.read_bytes(), headers=JPEG, timeout=60)
    assert r.status_code == 504 and 2.5 < time.monotonic() - started < 30, r.text  # the request's own timeout
    deadline = time.monotonic() + 120  # the batch runs over request timeout + 10 s: the worker is killed, replaced
    while (now := workers(server)[0])["pid"] == before["pid"] or not now["up"]:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    assert not alive(before["pid"])
    assert "ran over 13 s: killing it" in server.log()
    assert httpx.post(server.url + "/v1/detect", content=DOG.read_bytes(), headers=JPEG, timeout=60).status_code == 200


def test_two_workers_share_the_queue_and_die_with_their_server(tmp_path):
    srv = ServerProcess("--workers", "2", "--max-batch-size", "2", log=tmp_path / "server.log")
    try:
        found = workers(srv)
        assert [w["name"] for w in found] == ["yolov4-tiny/0", "yolov4-tiny/1"]
        assert len({w["pid"] for w in found}) == 2 and all(w["up"] for w in found)

        async def burst():
            async with httpx.AsyncClient(base_url=srv.url, timeout=120) as ac:
                return await asyncio.gather(
                    *(ac.post("/v1/detect", content=DOG.read_bytes(), headers=JPEG) for _ in range(16))
                )

        assert [r.status_code for r in asyncio.run(burst())] == [200] * 16
        lines = httpx.get(srv.url + "/metrics").text.splitlines()
        per_worker = [float(x.split()[-1]) for x in lines if x.startswith("hm_worker_images_total{")]
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker) and sum(per_worker) == 16, per_worker
    finally:
        srv.proc.kill()  # no drain, no goodbye: the workers see their pipe close and exit
        srv.proc.wait()
        srv.stop()
    deadline = time.monotonic() + 30
    while any(alive(w["pid"]) for w in found) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w["pid"]) for w in found)


def test_the_model_can_run_in_a_thread_of_the_server(tmp_path):
    srv = ServerProcess("--workers", "0", log=tmp_path / "server.log")
    try:
        assert workers(srv) == [{"name": "yolov4-tiny", "pid": None, "up": True, "restarts": 0, "device": "cpu"}]
        r = httpx.post(srv.url + "/v1/detect", content=DOG.read_bytes(), headers=JPEG, timeout=60)
        assert r.status_code == 200 and any(d["label"] == "dog" for d in r.json()["detections"])
    finally:
        assert srv.stop(), srv.log()
