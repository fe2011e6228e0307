"""A real `hebbian-mirror serve` process on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import WEIGHTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, log: Path, startup_timeout: float = 120.0, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HEBBIAN_MIRROR_WEIGHTS=str(WEIGHTS), HEBBIAN_MIRROR_OFFLINE="1")
        cmd = [
            sys.executable,
            "-m",
            "hebbian_mirror",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            *args,
        ]
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {startup_timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM and wait; True when the server shut down cleanly (uvicorn re-raises the signal after
        its graceful shutdown, so the exit status is -SIGTERM)."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in self.log()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class UiProcess:
    """``hebbian-mirror ui`` in front of ``api`` on a free port (extra flags: ``args``), ready when Streamlit's
    health check answers; :meth:`browser` opens headless Chromium (``make test`` installs it)."""

    def __init__(self, api: str, *args: str, timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "hebbian_mirror", "ui", "--api", api, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"the UI did not start within {timeout} s")

    @staticmethod
    def browser(playwright):
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        assert Path(chromium).exists(), "Chromium is missing: `make test` installs it (apt-get install chromium)"
        return playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
