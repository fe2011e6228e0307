"""Peers that misbehave, on loopback, for the camera-security tests and the isolation benchmark: an internal HTTP
service (MJPEG, counting who asks), a redirector, a camera that accepts and never speaks, webhook receivers that
hang, trickle or never end their answer; and what a test reads of a server process (memory, listening sockets)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg(size: tuple[int, int], value: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def self_signed(folder: Path, host: str = "127.0.0.1") -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for ``host`` (made by ``openssl``), kept in
    ``folder`` as ``cert.pem`` (the CA a client must trust) and ``key.pem``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class MjpegService:
    """An HTTP MJPEG feed (``/feed.mjpg``) on ``host``: ``sizes`` cycled frame by frame; counts requests. With
    ``redirect_to``, every request is answered 302 to that URL instead. With ``tls``, served over HTTPS with a
    self-signed certificate made by ``openssl``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        sizes: tuple[tuple[int, int], ...] = ((160, 120),),
        fps: float = 10.0,
        redirect_to: str | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        self.requests = 0
        service = self
        frames = [jpeg(s, 40 + 30 * i) for i, s in enumerate(sizes)]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests += 1
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while True:
                        data = frames[i % len(frames)]
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                        self.wfile.write(head)
                        self.wfile.write(data + b"\r\n")
                        i += 1
                        time.sleep(1 / fps)
                except OSError:
                    return

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls_dir is not None:
            context = self_signed(tls_dir, host)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}/feed.mjpg"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RawPeer:
    """A TCP server on loopback that accepts and then behaves as ``mode`` says, for every connection:

    - ``silent``: reads and never answers (a camera or receiver that hangs);
    - ``trickle``: answers ``HTTP/1.1 200 OK`` one byte every ``every`` seconds;
    - ``endless``: answers 200 and then sends a body forever, as fast as it can.
    """

    def __init__(self, mode: str, host: str = "127.0.0.1", every: float = 1.0) -> None:
        self.mode, self.every, self.connections = mode, every, 0
        self._sock = socket.create_server((host, 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                conn.recv(65536)
            if self.mode == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                    if self._stop.wait(self.every):
                        return
                    conn.sendall(bytes([byte]))
            elif self.mode == "endless":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
                chunk = b"x" * 65536
                while not self._stop.is_set():
                    conn.sendall(chunk)
            else:
                self._stop.wait()
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class MemoryWatch:
    """Samples a process's resident memory; kills it past ``limit_mb`` (so that a regression fails the test
    instead of taking the machine down). ``peak`` is the largest sample."""

    def __init__(self, pid: int, limit_mb: float, every: float = 0.1) -> None:
        self.pid, self.limit, self.peak, self.killed = pid, limit_mb, 0.0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                now = rss_mb(self.pid)
            except OSError:
                return
            self.peak = max(self.peak, now)
            if now > self.limit:
                self.killed = True
                os.kill(self.pid, 9)
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def listening(pid: int) -> set[tuple[str, int]]:
    """(protocol, port) of every listening TCP socket and every bound UDP socket the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{proto}")
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            if inode in inodes and (state == "0A" or proto.startswith("udp")):
                found.add((proto.rstrip("6"), port))
    return found


def announce(store, dispatcher, count: int, every: float) -> dict[str, float]:
    """Write ``count`` alarm events (one ``alarm.new`` message each), one every ``every`` seconds, telling the
    dispatcher each time; returns each event's id → ``time.monotonic()`` when it was written."""
    from hebbian_mirror.streams.events import Event, new_event_id

    written = {}
    for i in range(count):
        start = time.time()
        event = Event(new_event_id(start), "door", "pistol", 0, i, start, None, 0.9, (1, 2, 3, 4))
        store.begin(event)
        written[event.id] = time.monotonic()
        dispatcher.notify()
        time.sleep(every)
    return written


def delays(receiver, written: dict[str, float]) -> list[float]:
    """Seconds from written to received, of each message a :class:`WebhookReceiver` verified, sorted."""
    return sorted(t - written[m["data"]["id"]] for m, t in zip(receiver.received, receiver.arrived, strict=True))
