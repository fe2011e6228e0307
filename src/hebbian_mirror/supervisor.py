"""A small process supervisor: start children in their own process groups with their output in log files,
wait until each answers its health URL, notice one that exits, stop them all (SIGTERM, then SIGKILL).

On Linux each child also gets SIGTERM when the supervisor dies, even by SIGKILL (``PR_SET_PDEATHSIG``); the
kernel sends it when the *thread* that started the child exits, so start children from the main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ChildError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Child:
    """One supervised process: ``command`` runs with ``env`` (None: ours), its stdout and stderr in
    ``log_path``; it is healthy once ``health_url`` answers 200."""

    name: str
    command: list[str]
    health_url: str
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    echoed: int = field(default=0, init=False, repr=False)  # bytes of the log already shown

    @property
    def returncode(self) -> int | None:
        """None while running (or not started), else the exit status (negative: killed by that signal)."""
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
                data = f.read()
        except OSError:
            return "(no log)"
        text = data.decode(errors="replace").rstrip("\n")
        return "\n".join(text.splitlines()[-lines:]) if text else "(empty log)"


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: nothing to look up in the child
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: act as if the signal had come
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host``:``port`` (bound as a server would, SO_REUSEADDR set, so
    connections in TIME_WAIT do not count). Other failures (an address not on this machine) raise OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


class Supervisor:
    """Starts :class:`Child` processes and stops them; ``echo(child, line)``, when given, is shown each line
    of their logs by :meth:`pump`."""

    def __init__(self, echo: Callable[[Child, str], None] | None = None) -> None:
        self.children: list[Child] = []
        self.echo = echo

    def start(self, child: Child) -> None:
        """Start ``child`` in a new session (its own process group), output to its log (truncated)."""
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("wb") as log:
            child.proc = subprocess.Popen(
                child.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child.env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.children.append(child)

    def exited(self) -> Child | None:
        """The first started child that is no longer running, if any."""
        return next((c for c in self.children if c.returncode is not None), None)

    def wait_healthy(
        self, children: Iterable[Child], timeout: float, on_ready: Callable[[Child], None] | None = None
    ) -> None:
        """Wait until each of ``children`` answers its health URL with 200, calling ``on_ready`` as each does;
        :class:`ChildError` if any started child exits meanwhile, or one is not healthy within ``timeout`` s."""
        import httpx

        pending = list(children)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as http:  # no proxy between us and loopback
            while pending:
                self.pump()
                if (gone := self.exited()) is not None:
                    raise ChildError(gone, f"exited with code {gone.returncode} while starting")
                for child in list(pending):
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(child.health_url).status_code == 200:
                            pending.remove(child)
                            if on_ready:
                                on_ready(child)
                if pending and time.monotonic() > deadline:
                    raise ChildError(pending[0], f"did not answer {pending[0].health_url} within {timeout:g} s")
                if pending:
                    time.sleep(0.25)

    def pump(self) -> None:
        """Show the children's new complete log lines through ``echo`` (nothing without one)."""
        if self.echo is None:
            return
        for child in self.children:
            with contextlib.suppress(OSError), child.log_path.open("rb") as f:
                f.seek(child.echoed)
                data = f.read()
                end = data.rfind(b"\n") + 1
                child.echoed += end
                for line in data[:end].decode(errors="replace").splitlines():
                    self.echo(child, line)

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every child's process group, wait up to ``grace`` s for the groups to empty, SIGKILL those
        left, and reap the children."""
        started = [c for c in self.children if c.proc is not None]
        for child in started:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_group_alive(c) for c in started) and time.monotonic() < deadline:
            self.pump()
            time.sleep(0.1)
        for child in started:
            if _group_alive(child):
                _signal_group(child, signal.SIGKILL)
            assert child.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
        self.pump()


def _signal_group(child: Child, signum: int) -> None:
    assert child.proc is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, signum)  # the child leads its own group: its pid is the group's id


def _group_alive(child: Child) -> bool:
    """Whether the child or anything left in its process group still runs."""
    assert child.proc is not None
    if child.proc.poll() is None:
        return True
    try:
        os.killpg(child.proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
