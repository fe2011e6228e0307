"""Real peers for the stream tests: a test clip made from real images, and a loopback webhook receiver that
verifies every delivery's signature with the official Standard Webhooks library."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from .conftest import COCO_VAL, SHARED

# A pistol the shared weapons checkpoint finds with score 0.93, and a COCO scene where it finds nothing.
PISTOL_IMAGE = SHARED / "data/weapons/pistols/valid/images/armas--1007-_jpg.rf.36376d4887e8fbb596d2274af028689c.jpg"
SCENE_IMAGE = COCO_VAL / "images" / "000000000139.jpg"
WEAPONS_MODEL = SHARED / "weights" / "weapons4-yolov4-tiny.pt"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes: a Standard Webhooks secret


def _panned(path: Path, frames: int) -> list[np.ndarray]:
    """``frames`` views of an image that drifts slowly, as a camera sees a still scene."""
    from hebbian_mirror.streams.clipset import drifting

    return drifting(path, frames, random.Random(0))


def alarm_clip(path: Path, appearances: int = 2, fps: int = 10) -> tuple[Path, list[tuple[int, int]]]:
    """An mp4 of a scene with the pistol appearing ``appearances`` times for 2.5 s each, 2 s of scene around
    each; returns the path and the pistol's visible frame ranges."""
    from hebbian_mirror.streams.clipset import encode_clip

    frames, visible = _panned(SCENE_IMAGE, 2 * fps), []
    for _ in range(appearances):
        first = len(frames)
        frames += _panned(PISTOL_IMAGE, int(2.5 * fps))
        visible.append((first, len(frames) - 1))
        frames += _panned(SCENE_IMAGE, 2 * fps)
    encode_clip(frames, path, fps)
    return path, visible


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that verifies each POST with ``standardwebhooks`` (answering 401 when the
    signature is wrong) and keeps the verified messages."""

    def __init__(self, port: int, secret: str = SECRET, fail_first: int = 0) -> None:
        """``fail_first``: answer that many deliveries 503 before accepting any."""
        from standardwebhooks.webhooks import Webhook

        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.received: list[dict] = []  # {"id", "type", "data"} of every verified delivery
        self.arrived: list[float] = []  # time.monotonic() of each, in the same order
        self.rejected = 0
        self.failed = 0
        self.fail_first = fail_first
        verifier = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                except Exception:
                    receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                if receiver.failed < receiver.fail_first:
                    receiver.failed += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                message = json.loads(body)
                receiver.received.append({"id": self.headers["webhook-id"], **message})
                receiver.arrived.append(time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def ids(self) -> list[str]:
        return [m["id"] for m in self.received]

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.received if m["type"] == f"alarm.{kind}"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_udp_ports(count: int = 64) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1 (an RTSP server's RTP ports: two more for
    each client connection), below the kernel's ephemeral range."""
    import random
    import socket

    for _ in range(100):
        base = random.randrange(20100, 32000 - count, count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free UDP ports")


class RtspServer:
    """Debian's RTSP server (``rtsp-server-perl``) on loopback with ffmpeg publishing ``clip`` into it in real
    time, in a loop; ``url`` is what a camera client reads. ``kill`` takes both down, ``start`` brings them back
    on the same ports."""

    def __init__(self, clip: Path) -> None:
        from .server_process import free_port

        self.clip, self.client_port, self.source_port = clip, free_port(), free_port()
        self.rtp_port = free_udp_ports()  # not the server's default (20000): two servers can run side by side
        self.url = f"rtsp://127.0.0.1:{self.client_port}/live"
        self.procs: list = []
        self.start()

    def start(self) -> None:
        import subprocess
        import time

        # rtsp-server-perl's own script, with RTP ports of its own: the server resets them to its package default
        # (20000) whenever it has no stream, so that default is set too (two servers can then run side by side)
        start = "$RTSP::Server::RTP_START_PORT = shift; my $server = RTSP::Server->new_with_options("
        start += "rtp_start_port => $RTSP::Server::RTP_START_PORT); $server->listen; AnyEvent->condvar->recv"
        server = ["perl", "-MAnyEvent", "-MRTSP::Server", "-e", start, str(self.rtp_port)]
        server += ["-c", str(self.client_port), "-s", str(self.source_port), "-l", "1"]
        server += ["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"]
        self.procs = [subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        time.sleep(1.0)  # the server listens
        publish = ["ffmpeg", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy"]
        publish += ["-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/live"]
        self.procs.append(subprocess.Popen(publish, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


class SmtpServer:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that offers STARTTLS with a self-signed certificate
    (``folder/cert.pem``), accepts AUTH (``user`` / ``password``) only after it, and keeps every e-mail received
    (``email.message.EmailMessage``); ``refuse`` makes it answer 451 (a temporary outage) until cleared."""

    def __init__(self, folder: Path, user: str = "alarms", password: str = "s3cret-smtp") -> None:
        import email
        import email.policy

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        from .hostile_peers import self_signed
        from .server_process import free_port

        self.received: list = []
        self.logins: list[str] = []
        self.refuse = False
        self.ca = folder / "cert.pem"
        context = self_signed(folder)
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                if server.refuse:
                    return "451 try again later"
                server.received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            if ok:
                server.logins.append(user)
            return AuthResult(success=ok)

        self.port = free_port()
        self._controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=context, require_starttls=True,
            authenticator=authenticate, auth_required=True, auth_require_tls=True,
        )  # fmt: skip
        self._controller.start()
        self.url = f"smtp://{user}:{password}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self._controller.stop()


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2):
    """``predicate()``'s first true value within ``timeout`` seconds, else an AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


class Mosquitto:
    """A real MQTT broker (mosquitto) on a loopback ``port`` (a free one by default), anonymous access."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        import subprocess

        from .server_process import free_port

        self.port = port or free_port()
        conf = folder / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def client(self, on_message=None):
        """A paho client connected to it (retrying while the broker starts), its network loop running."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message = on_message

        def connected() -> bool:
            try:
                return client.connect("127.0.0.1", self.port) == 0
            except ConnectionRefusedError:
                return False

        wait_for(connected, timeout=10)
        client.loop_start()
        return client

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
