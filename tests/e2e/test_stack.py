"""`hebbian-mirror stack`: real API, UI and MLflow processes; all of them gone after SIGTERM, and after SIGKILL of
the stack itself (the children's death signal); a port in use refused before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..server_process import free_port


def proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of ``pid`` from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """``root`` and all its descendants: pid → start time (so a reused pid is not mistaken for one of them)."""
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := proc_stat(int(p.name)))}
    tree = {root: stats[root][2]}
    grew = True
    while grew:
        found = {pid: s[2] for pid, s in stats.items() if s[0] in tree and pid not in tree}
        tree |= found
        grew = bool(found)
    return tree


def alive(tree: dict[int, int]) -> list[str]:
    """The processes of ``tree`` still running (zombies count as gone), with their command lines."""
    left = []
    for pid, started in tree.items():
        stat = proc_stat(pid)
        if stat is not None and stat[2] == started and stat[1] != "Z":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            left.append(f"{pid}: {cmdline[:160]}")
    return left


def wait_gone(tree: dict[int, int], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := alive(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


class Stack:
    """``python -m hebbian_mirror stack`` on free ports, with the test weights, output in a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.api, self.ui, self.mlflow = free_port(), free_port(), free_port()
        self.dir = tmp_path / "stack"
        self.out = tmp_path / "stack-output.txt"
        cmd = [sys.executable, "-m", "hebbian_mirror", "stack", "--dir", str(self.dir), "--startup-timeout", "100"]
        cmd += ["--port", str(self.api), "--ui-port", str(self.ui), "--mlflow-port", str(self.mlflow)]
        cmd += ["--model", "yolov4-tiny", "--device", "cpu", "--workers", "1"]  # the last two go through to serve
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # conftest's: test weights, offline, no telemetry
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self, timeout: float = 110.0) -> None:
        deadline = time.monotonic() + timeout
        while "Stack ready" not in self.output():
            assert self.proc.poll() is None, f"the stack exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"the stack was not ready after {timeout} s:\n{self.output()}"
            time.sleep(0.5)

    def close(self) -> None:
        """Whatever a failed test left: SIGTERM, then SIGKILL the stack (its children follow it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def stack(tmp_path):
    started = Stack(tmp_path)
    yield started
    started.close()


def test_stack_serves_all_three_and_sigterm_stops_every_process(stack):
    stack.wait_ready()
    out = stack.output()
    for port in (stack.api, stack.ui, stack.mlflow):
        assert f"http://127.0.0.1:{port}" in out, out
    get = httpx.Client(timeout=10, trust_env=False).get
    assert get(f"http://127.0.0.1:{stack.api}/ready").status_code == 200
    assert get(f"http://127.0.0.1:{stack.ui}/_stcore/health").status_code == 200
    assert get(f"http://127.0.0.1:{stack.mlflow}/health").status_code == 200
    found = get(f"http://127.0.0.1:{stack.mlflow}/api/2.0/mlflow/experiments/search?max_results=1")
    assert found.status_code == 200 and found.json()["experiments"][0]["name"] == "Default", found.text
    assert (stack.dir / "mlflow.db").is_file()
    assert "Application startup complete" in (stack.dir / "logs" / "api.log").read_text()

    tree = process_tree(stack.proc.pid)
    commands = "\n".join(alive(tree))
    for piece in (" serve ", "streamlit run", "mlflow server", "multiprocessing"):  # serve's worker too
        assert piece in commands, commands
    serve = next(pid for pid in tree if b"\0serve\0" in Path(f"/proc/{pid}/cmdline").read_bytes())
    environ = Path(f"/proc/{serve}/environ").read_bytes().split(b"\0")
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{stack.mlflow}".encode() in environ

    started = time.monotonic()
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(30) == 0, stack.output()
    assert time.monotonic() - started < 30
    assert not wait_gone(tree, 5), f"left running after the stack stopped: {alive(tree)}"
    assert "Stack stopped." in stack.output()
    assert "Application shutdown complete" in (stack.dir / "logs" / "api.log").read_text()  # stopped cleanly


def test_children_die_with_a_killed_stack(stack):
    stack.wait_ready()
    tree = process_tree(stack.proc.pid)
    assert len(tree) >= 5, alive(tree)  # the stack, its three children, serve's worker (and more)
    stack.proc.kill()
    stack.proc.wait()
    assert not wait_gone(tree, 20), f"orphans 20 s after SIGKILL of the stack: {alive(tree)}"
