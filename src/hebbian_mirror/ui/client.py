"""The UI's view of the server: a small HTTP client whose errors are sentences a person can act on."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from hebbian_mirror.boxes import held_by
from hebbian_mirror.classes import canonical_name
from hebbian_mirror.detection import Detections
from hebbian_mirror.errors import HebbianMirrorError

MAX_FETCH_BYTES = 20_000_000
MAX_REDIRECTS = 5


class ServerError(HebbianMirrorError):
    """Something the page shows as a message instead of a traceback."""


# What each status the server answers means to someone using the page.
PLAIN_WORDS = {
    400: "The server could not read this image",
    401: "The server needs an API key, or the key given is wrong — set it in the sidebar",
    403: "This API key may not do that",
    404: "The server does not have that model",
    413: "The image is too large for the server",
    415: "The server does not accept this kind of file",
    422: "The server rejected a setting",
    503: "The server is busy or still loading its models — try again in a moment",
    504: "The server took too long to answer",
}


@dataclass
class Detected:
    """One image's answer from ``POST /v1/detect``."""

    model: str
    width: int
    height: int
    detections: list[dict]  # as the API sent them (the page's table shows them)
    timing: dict

    def found(self, classes: Sequence[str]) -> Detections:
        """The detections in the product's one form, for a model of ``classes`` (when the page has no class list
        for it, e.g. listed while loading, the answer's own labels)."""
        if not classes:
            known = {d["class_id"]: d["label"] for d in self.detections}
            classes = [known.get(i, "") for i in range(max(known, default=-1) + 1)]
        return Detections.from_dicts(self.detections, classes, (self.width, self.height))


class Answers:
    """The detection answers a page session already has, at most ``size``, the least recently used dropped first:
    a request the page has made before is not sent again. Only answers are kept, never failures, so a failed
    request is tried anew the next time the page runs."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Detected] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Detected | None:
        if key in self._items:
            self._items.move_to_end(key)
        return self._items.get(key)

    def put(self, key: Hashable, answer: Detected) -> None:
        self._items[key] = answer
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def digest(data: bytes) -> str:
    """The name an image's bytes are remembered by."""
    return hashlib.sha256(data).hexdigest()


class Client:
    def __init__(
        self, url: str, api_key: str | None = None, timeout: float = 60.0, answers: Answers | None = None
    ) -> None:
        """``answers``: where detection answers are remembered (none: every request is sent)."""
        self.url = url.rstrip("/")
        self._key = api_key
        self.answers = answers
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ServerError(
                f"Cannot reach the server at {self.url} — is it running? Start it with `make serve` "
                "or `hebbian-mirror serve`, or fix the address in the sidebar."
            ) from None
        except httpx.TimeoutException:
            raise ServerError(f"The server at {self.url} did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise ServerError(f"Talking to {self.url} failed: {exc}") from None
        if r.status_code >= 400:
            raise ServerError(self.explain(r))
        return r

    @staticmethod
    def explain(r: httpx.Response) -> str:
        try:
            detail = r.json().get("error") or ""
        except ValueError:
            detail = r.text[:200]
        words = PLAIN_WORDS.get(r.status_code)
        if words is None:
            words = "The server failed" if r.status_code >= 500 else "The server refused the request"
        return f"{words} (HTTP {r.status_code}{': ' + detail if detail else ''})."

    def health(self) -> dict:
        return self._call("GET", "/health").json()

    def ready(self) -> dict:
        """``/ready`` answers 503 while loading: that is a status here, not an error."""
        try:
            r = self._http.get("/ready")
        except httpx.HTTPError:
            return self._call("GET", "/ready").json()  # raises the readable error
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else {"ready": False}

    def models(self) -> list[dict]:
        return self._call("GET", "/v1/models").json()["models"]

    def detect(
        self, image: bytes, name: str, model: str, conf: float, iou: float, classes: list[str], merge: bool = False
    ) -> Detected:
        """``POST /v1/detect``, or the remembered answer to the same request (same server, key, image bytes,
        model and settings)."""
        key = (self.url, self._key, digest(image), model, conf, iou, tuple(classes), merge)
        if self.answers is not None and (known := self.answers.get(key)) is not None:
            return known
        params: dict = {"model": model, "conf": conf, "iou": iou, "merge": "true" if merge else "false"}
        if classes:
            params["classes"] = ",".join(classes)
        body = self._call("POST", "/v1/detect", params=params, files={"image": (name, image)}).json()
        answer = Detected(
            body["model"], body["image"]["width"], body["image"]["height"], body["detections"], body["timing"]
        )
        if self.answers is not None:
            self.answers.put(key, answer)
        return answer

    # ------------------------------------------------------------------ streams and events

    def streams(self) -> list[dict]:
        return self._call("GET", "/v1/streams").json()["streams"]

    def scopes(self) -> set[str]:
        """What this client's key may do on the server (``GET /v1/auth``): detect, view, review, admin."""
        try:
            r = self._http.get("/v1/auth")
        except httpx.HTTPError:  # the server is down: the page says so where it lists the cameras
            return set()
        if r.status_code == 404:  # a server from before scopes: one key did everything
            return {"detect", "view", "review", "admin"}
        if r.status_code >= 400:
            return set()
        return set(r.json().get("scopes", []))

    def add_stream(
        self, name: str, url: str, alarm: list[str] | None = None, fps: float | None = None, tls_verify: bool = True
    ) -> dict:
        body: dict = {"name": name, "url": url, "tls_verify": tls_verify}
        if alarm is not None:
            body["alarm"] = alarm
        if fps:
            body["fps"] = fps
        return self._call("POST", "/v1/streams", json=body).json()

    def cameras(self) -> list[dict]:
        """The server's configured cameras, as its camera file has them (admin)."""
        return self._call("GET", "/v1/cameras").json()["cameras"]

    def put_camera(self, name: str, entry: dict) -> dict:
        """Add or change a camera (its whole entry); the server restarts it and keeps it in its camera file."""
        return self._call("PUT", f"/v1/cameras/{name}", json=entry).json()

    def arm(self, name: str, mode: str) -> dict:
        """Arm (``armed``), disarm (``disarmed``) or let a stream follow its ``schedule``."""
        return self._call("POST", f"/v1/streams/{name}/arming", json={"mode": mode}).json()

    def remove_stream(self, name: str) -> None:
        self._call("DELETE", f"/v1/streams/{name}")

    def latest_frame(self, name: str) -> bytes | None:
        """The stream's newest annotated frame; ``None`` before its first."""
        r = self._http.get(f"/v1/streams/{name}/latest.jpg")
        return r.content if r.status_code == 200 else None

    def events(self, **filters) -> list[dict]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._call("GET", "/v1/events", params=params).json()["events"]

    def review(self, event_id: str, state: str, note: str | None = None) -> dict:
        """Acknowledge, confirm or mark an event a false alarm (the key's holder is the reviewer)."""
        body = {"state": state} | ({"note": note} if note else {})
        return self._call("POST", f"/v1/events/{event_id}/review", json=body).json()

    def event_file(self, event_id: str, name: str) -> bytes | None:
        """``snapshot.jpg`` or ``clip.mp4`` of an event; ``None`` when it has none."""
        r = self._http.get(f"/v1/events/{event_id}/{name}")
        return r.content if r.status_code == 200 else None


def load_image_source(source: str, allowed: Sequence[str]) -> tuple[str, bytes]:
    """Bytes of an image given as an http(s) URL or a path on this machine, only from where ``allowed`` says:
    URL prefixes (``https://example.com/photos/``) and folders. A redirect is followed only to another allowed
    URL on a public address, never into the private network."""
    source = source.strip()
    if source.startswith(("http://", "https://")):
        return _fetch(source, [a for a in allowed if a.startswith(("http://", "https://"))])
    folders = [Path(a).expanduser().resolve() for a in allowed if not a.startswith(("http://", "https://"))]
    path = Path(source).expanduser().resolve()
    if not any(path.is_relative_to(folder) for folder in folders):
        raise ServerError(
            f"{source} is outside the folders this page may read ({', '.join(map(str, folders)) or 'none'})."
        )
    if not path.is_file():
        raise ServerError(f"No image file at {path}.")
    if path.stat().st_size > MAX_FETCH_BYTES:
        raise ServerError(f"{path} is over {MAX_FETCH_BYTES // 1_000_000} MB.")
    return path.name, path.read_bytes()


def _public(host: str) -> bool:
    """Whether every address ``host`` resolves to is a public one."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(_global(info[4][0]) for info in infos)


def _global(address: str) -> bool:
    """Whether an IP address (an IPv6 one maybe with its ``%zone``) is a public one."""
    return ipaddress.ip_address(address.split("%")[0]).is_global


def _connected_to_public(r: httpx.Response) -> bool:
    """Whether the address ``r`` came from is a public one: a second check after :func:`_public`, against a
    name that resolves to a public address when checked and to a private one when connected (DNS
    rebinding). Nothing of such an answer is read."""
    stream = r.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    return bool(peer) and _global(str(peer[0]))


def _fetch(url: str, prefixes: list[str]) -> tuple[str, bytes]:
    if not url.startswith(tuple(prefixes)):
        raise ServerError(f"{url} is not under an address this page may fetch ({', '.join(prefixes) or 'none'}).")
    try:
        with httpx.Client(timeout=30, follow_redirects=False) as http:
            for hop in range(MAX_REDIRECTS + 1):
                with http.stream("GET", url) as r:
                    if hop and not _connected_to_public(r):  # the name resolved anew since it was checked
                        raise ServerError(f"{url} led to a private address, which this page may not fetch.")
                    if not r.is_redirect:
                        return url.rsplit("/", 1)[-1] or "image", _body(r, url)
                    target = urljoin(url, r.headers.get("location", ""))
                if not target.startswith(tuple(prefixes)) or not _public(urlsplit(target).hostname or ""):
                    raise ServerError(f"{url} redirects to {target}, which this page may not fetch.")
                url = target
    except httpx.HTTPError as exc:
        raise ServerError(f"Fetching {url} failed: {exc}") from None
    raise ServerError(f"{url}: more than {MAX_REDIRECTS} redirects.")


def _body(r: httpx.Response, url: str) -> bytes:
    """A streamed answer's body, refused past :data:`MAX_FETCH_BYTES`."""
    if r.status_code >= 400:
        raise ServerError(f"Fetching {url} failed: HTTP {r.status_code}.")
    data = bytearray()
    for chunk in r.iter_bytes():
        data += chunk
        if len(data) > MAX_FETCH_BYTES:
            raise ServerError(f"{url} is over {MAX_FETCH_BYTES // 1_000_000} MB.")
    return bytes(data)


def holdings(found: Detections, dangerous: set[str], threshold: float, names: dict[str, str]) -> list[str]:
    """ "person holding a pistol" for each dangerous object at or above ``threshold`` inside a person's box."""
    out = []
    for i, holder in held_by(found, dangerous).items():
        if holder is not None and found[i].score >= threshold:
            out.append(f"person holding a {names.get(found[i].label, found[i].label).lower()}")
    return out


def alerts(found: Detections, dangerous: set[str], threshold: float) -> dict[str, int]:
    """Count of each dangerous class found at or above ``threshold`` (class names matched as everywhere)."""
    wanted = {canonical_name(c) for c in dangerous}
    counts: dict[str, int] = {}
    for d in found:
        if canonical_name(d.label) in wanted and d.score >= threshold:
            counts[d.label] = counts.get(d.label, 0) + 1
    return counts
