"""The server as a Ray Serve application on a local 2-CPU Ray cluster: every API family through Serve, two replicas
sharing the load, a replica killed mid-load replaced without failing clients, a clean stop; and the Serve
config file."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from ..conftest import DOG, KNIFE, WEIGHTS
from ..server_process import free_port

REPLICA = "ServeReplica:hebbian-mirror:model-"
DOG_LABELS = {"dog", "bicycle", "truck"}


def processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return found


def tree(root: int) -> set[int]:
    procs, out, todo = processes(), {root}, [root]
    while todo:
        parent = todo.pop()
        kids = {pid for pid, (ppid, _) in procs.items() if ppid == parent} - out
        out |= kids
        todo += kids
    return out


def alive(pids: set[int]) -> set[int]:
    procs = processes()
    return {p for p in pids if p in procs and procs[p][1] != ""}  # a zombie has no command line


def replicas() -> dict[int, str]:
    return {pid: cmd for pid, (_, cmd) in processes().items() if REPLICA in cmd}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("ray") / "serve.log").open("wb")
    env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), HEBBIAN_MIRROR_OFFLINE="1")
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--ray", "--ray-num-cpus", "2", "--ray-replicas", "2"]
    cmd += ["--port", str(port), "--device", "cpu", "--max-batch-size", "4", "--ray-max-ongoing-requests", "8"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, Path(log.name).read_text(errors="replace")[-5000:]
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("serve --ray not ready in 240 s:\n" + Path(log.name).read_text(errors="replace")[-5000:])
    yield url, proc, Path(log.name)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def load(url: str, seconds: float, clients: int = 8, during=None) -> tuple[collections.Counter, collections.Counter]:
    """``clients`` sending the dog for ``seconds`` (``during()`` called once after a second): status codes and
    the replicas that answered."""
    data = DOG.read_bytes()
    codes, workers = collections.Counter(), collections.Counter()

    async def run() -> None:
        end = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def one() -> None:
                while time.monotonic() < end:
                    r = await client.post("/v1/detect", content=data, headers={"Content-Type": "image/jpeg"})
                    codes[r.status_code] += 1
                    if r.status_code == 200:
                        assert {d["label"] for d in r.json()["detections"]} >= DOG_LABELS
                        workers[r.json()["timing"]["worker"]] += 1

            async def trigger() -> None:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(during)

            await asyncio.gather(*(one() for _ in range(clients)), *([trigger()] if during else []))

    asyncio.run(run())
    return codes, workers


def test_every_api_family_answers_through_serve(server):
    url = server[0]
    with httpx.Client(base_url=url, timeout=60) as c:
        native = c.post("/v1/detect", content=DOG.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()
        assert {d["label"] for d in native["detections"]} >= DOG_LABELS
        assert "@" in native["timing"]["worker"]  # replica id @ its pid
        deepstack = c.post("/v1/vision/detection", files={"image": ("dog.jpg", DOG.read_bytes())}).json()
        assert deepstack["success"] and {p["label"] for p in deepstack["predictions"]} == DOG_LABELS
        assert c.post("/v1/vision/custom/yolov4-tiny", files={"image": ("d.jpg", DOG.read_bytes())}).status_code == 200
        per_class = c.post("/recognition/object/boxes", content=DOG.read_bytes()).json()
        assert len(per_class) == 80 and per_class[16]
        demo = c.post("/predict", files={"file": ("knife.jpg", KNIFE.read_bytes(), "image/jpeg")}).json()
        assert "person" in demo["labels"]
        annotated = c.post("/v1/detect/annotated", content=DOG.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert annotated.headers["content-type"] == "image/jpeg" and int(annotated.headers["x-detections"]) >= 3
        bad = c.post("/v1/detect", content=b"not an image", headers={"Content-Type": "image/jpeg"})
        assert bad.status_code == 400 and "image" in bad.json()["error"]
        models = c.get("/v1/models").json()["models"]
        assert models[0]["name"] == "yolov4-tiny" and len(models[0]["classes"]) == 80
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60.0)
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([DOG.read_bytes()], dtype=np.object_))
    result = client.infer("yolov4-tiny", [image])
    assert {v.decode() for v in result.as_numpy("labels")} >= DOG_LABELS
    client.close()


def test_two_replicas_share_the_load_and_a_killed_one_is_replaced(server):
    url = server[0]
    codes, workers = load(url, 6)
    assert set(codes) == {200}, codes
    assert len(workers) == 2 and min(workers.values()) >= 3, workers  # both replicas answered
    before = replicas()
    assert len(before) == 2, before
    victim = min(before)
    codes, workers = load(url, 12, during=lambda: os.kill(victim, signal.SIGKILL))
    # requests the dead replica held are sent again to the other one: at most those (8) could have failed
    assert codes[200] > 20 and sum(n for code, n in codes.items() if code >= 500) <= 8, codes
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (victim in replicas() or len(replicas()) < 2):
        time.sleep(1)
    after = replicas()
    assert victim not in after and len(after) == 2, after
    codes, workers = load(url, 8)
    assert set(codes) == {200}, codes
    assert any(w.endswith(f"@{pid}") for w in workers for pid in set(after) - set(before)), (workers, after)


def test_sigterm_stops_serve_and_its_local_cluster(server):
    _, proc, log = server
    everything = tree(proc.pid)
    assert len(everything) > 5 and replicas()  # raylet, GCS, controller, proxy, replicas...
    proc.send_signal(signal.SIGTERM)
    proc.wait(90)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(everything):
        time.sleep(0.5)
    assert not alive(everything), {p: processes().get(p) for p in alive(everything)}
    assert "stopping the Ray Serve application" in log.read_text(errors="replace")
