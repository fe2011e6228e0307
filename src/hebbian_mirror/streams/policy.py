"""Which video sources may be watched: one policy for the API, ``serve --stream``, ``watch`` and the UI.

- **Cameras on the network**: rtsp(s), rtmp(s), http(s) (MJPEG, HLS), srt, and udp to a multicast group. No
  option that makes FFmpeg listen or bind a port of the caller's choosing; redirects are not followed; FFmpeg may
  use only the protocols and demuxers a camera needs (an HLS playlist cannot name a ``file:`` segment, a text
  answer is not rendered into frames); TLS certificates are checked unless the stream says otherwise.
- **Devices**: ``/dev/videoN`` (a character device).
- **Local files, folders and globs**: regular files of image or video types, inside the folders the operator
  allowed (``--allow-source``). A path the operator names on the command line or in the settings file is
  allowed itself; one sent through the API is not.
- **Hosts** (sources sent through the API): any but this machine's own (loopback, unspecified) and link-local
  (cloud metadata) addresses; only the ``--source-host`` names and networks when some are given.

A refusal is a :class:`SourceError` whose text never tells whether a file outside the allowed folders exists,
and never holds a password.
"""

from __future__ import annotations

import glob
import ipaddress
import itertools
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..config import AlarmSettings, LimitSettings
from ..errors import SourceError
from ..images import IMAGE_SUFFIXES
from .addresses import METADATA, is_multicast, own_addresses, resolve
from .media import mask_url

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv", ".wmv"}
    | {".asf", ".3gp", ".mjpeg", ".mjpg", ".h264", ".264", ".h265", ".265", ".hevc", ".ogv", ".dav"}
)
# Demuxers a camera or a video file needs; nothing that renders text (tty) or opens other files (concat).
FORMATS = (
    "mov,matroska,avi,mpegts,mpeg,mpegvideo,flv,live_flv,asf,h264,hevc,mjpeg,mpjpeg,image2,jpeg_pipe,png_pipe,"
    "webp_pipe,bmp_pipe,gif,gif_pipe,ogg,dv,m4v,rtsp,rtp,sdp,hls"
)
# The protocols each scheme may use inside FFmpeg (an HLS playlist or an RTSP server cannot lead elsewhere).
PROTOCOLS = {
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy",
    "rtmp": "rtmp,rtmps,rtmpt,rtmpts,tcp,tls",
    "http": "http,https,tcp,tls,crypto,httpproxy",
    "srt": "srt",
    "udp": "udp,rtp",
}
SCHEMES = {
    "rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "rtmp", "rtmps": "rtmp", "http": "http", "https": "http",
    "srt": "srt", "udp": "udp",
}  # fmt: skip
UDP_OPTIONS = {"fifo_size", "overrun_nonfatal", "buffer_size", "timeout", "pkt_size"}
DEVICE = re.compile(r"/dev/video\d{1,3}")
MAX_URL = 2048


def ca_file() -> str | None:
    """The CA bundle TLS sources are checked against (FFmpeg has none of its own)."""
    try:
        import certifi

        return certifi.where()
    except ImportError:  # pragma: no cover - httpx depends on certifi
        return next((p for p in ("/etc/ssl/certs/ca-certificates.crt",) if os.path.isfile(p)), None)


@dataclass(frozen=True)
class CheckedSource:
    """A source the policy accepted: what to open, how, and (files) where it must stay."""

    url: str
    kind: str  # stream | device | file | images
    av_options: dict[str, str] = field(default_factory=dict)
    images: tuple[Path, ...] = ()
    roots: tuple[Path, ...] = ()  # local files must stay inside these (checked again at every read)


def _inside(path: str | Path, roots: Iterable[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == r or real.is_relative_to(r) for r in roots)


@dataclass(frozen=True)
class SourcePolicy:
    """The rules above; ``folders`` the operator allowed, ``hosts`` the allowlist (empty: the default)."""

    folders: tuple[Path, ...] = ()
    hosts: tuple[str, ...] = ()
    max_file_bytes: int = 20_000_000
    max_images: int = 100_000

    @classmethod
    def from_settings(cls, alarms: AlarmSettings, limits: LimitSettings) -> SourcePolicy:
        """From ``allow_source``, ``source_hosts`` and ``max_upload_mb`` (an image file as large as an upload)."""
        return cls(
            tuple(Path(os.path.realpath(Path(f).expanduser())) for f in alarms.allow_source),
            tuple(h.strip().lower() for h in alarms.source_hosts if h.strip()),
            int(limits.max_upload_mb * 1_000_000),
        )

    def check(self, url: str, *, operator: bool = False, tls_verify: bool = True) -> CheckedSource:
        """``url`` as a source, or :class:`SourceError` saying why not. ``operator``: named by whoever runs the
        server (the path itself is allowed, the host is not checked)."""
        if not isinstance(url, str) or not url.strip():
            raise SourceError("a source needs a URL or a path")
        if len(url) > MAX_URL or any(ord(c) < 32 or ord(c) == 127 for c in url):
            raise SourceError(f"a source URL must be printable and at most {MAX_URL} characters")
        bare = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)", url)
        if bare and bare.group(1).lower() in (*SCHEMES, "file", "tcp"):
            name = bare.group(1).lower()
            raise SourceError(f"the {name}: URL given is not valid; expected {name}://HOST[:PORT]/PATH")
        scheme = _scheme(url)
        if not scheme and re.match(r"[A-Za-z0-9.-]+:\d+(/|$)", url):  # host:port/path, the scheme forgotten
            shown = url if "@" not in url else "the URL given"
            raise SourceError(f"{shown} has no scheme: a camera URL starts with rtsp:// (or http://, rtmp://, ...)")
        if scheme and scheme != "file":
            try:
                return self._network(url, scheme, operator, tls_verify)
            except ValueError:  # urlsplit's own refusals: a bad IPv6 literal, a bad port
                raise SourceError(f"{mask_url(url)}: not a valid URL") from None
        path = url[7:] if scheme == "file" else url
        if path.startswith("/dev/"):
            return self._device(path)
        return self._local(path, operator)

    # ------------------------------------------------------------------ network

    def _network(self, url: str, scheme: str, operator: bool, tls_verify: bool) -> CheckedSource:
        shown = mask_url(url)
        family = SCHEMES.get(scheme)
        if family is None:
            accepted = ", ".join(f"{s}://" for s in SCHEMES)
            raise SourceError(f"unsupported URL scheme {scheme!r} in {shown}: cameras use {accepted}")
        parts = urlsplit(url)
        try:
            host, _ = parts.hostname, parts.port
        except ValueError:
            raise SourceError(f"{shown}: the port is not a number from 0 to 65535") from None
        if not host:
            raise SourceError(f"{shown}: no host in it (expected {scheme}://HOST[:PORT]/PATH)")
        if "#" in url:  # FFmpeg reads options after a '?' that Python takes for part of the fragment
            raise SourceError(f"{shown}: a camera URL has no '#' part")
        query = _options(url, shown)
        if any(k in ("listen", "localport", "localaddr", "reuse", "reuse_socket") for k in query):
            raise SourceError(f"{shown}: options that make this server listen or bind a port are not accepted")
        if family == "srt" and query.get("mode", "caller").lower() != "caller":
            raise SourceError(f"{shown}: only mode=caller is accepted (this server connects, it does not listen)")
        if family == "udp":
            if not is_multicast(host):
                raise SourceError(
                    f"{shown}: a udp:// source must be a multicast group (udp://239.1.1.1:5000): any other "
                    "makes this server bind a port"
                )
            if unknown := sorted(set(query) - UDP_OPTIONS):
                raise SourceError(f"{shown}: udp options {unknown} are not accepted; known: {sorted(UDP_OPTIONS)}")
        if not operator:
            self.check_host(url)
        # An HLS playlist's own URLs are opened without these options (FFmpeg passes on only headers and the
        # like): only the operator's sources may be HLS.
        formats = FORMATS if operator else FORMATS.replace(",hls", "")
        options = {"protocol_whitelist": PROTOCOLS[family], "format_whitelist": formats}
        if family in ("http", "rtsp", "rtmp"):
            options |= {"max_redirects": "0", "tls_verify": "1" if tls_verify else "0"}
            if tls_verify and (bundle := ca_file()):
                options["ca_file"] = bundle
        return CheckedSource(url, "stream", options)

    def check_host(self, url: str) -> None:
        """:class:`SourceError` unless ``url``'s host may be watched by an API client: resolved now (a source
        checks again each time it reconnects, so a name that comes to point elsewhere is caught then)."""
        shown, host = mask_url(url), urlsplit(url).hostname or ""
        addresses = resolve(host, shown)
        if self.hosts:
            if host.lower() in self.hosts or all(any(a in n for n in self._networks()) for a in addresses):
                return
            raise SourceError(f"{shown}: the host is not among those this server may watch (--source-host)")
        own = own_addresses()
        for a in addresses:
            mine = a.is_loopback or a.is_unspecified or a.is_link_local or a in own or a in METADATA
            if mine or (a.is_multicast and urlsplit(url).scheme.lower() != "udp"):
                raise SourceError(
                    f"{shown}: {host} is this machine, a link-local or a cloud metadata address; cameras there "
                    "must be allowed with --source-host"
                )

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for h in self.hosts:
            try:
                out.append(ipaddress.ip_network(h, strict=False))
            except ValueError:
                continue  # a host name: matched by name
        return out

    # ------------------------------------------------------------------ devices

    def _device(self, path: str) -> CheckedSource:
        if not DEVICE.fullmatch(path):
            raise SourceError(f"{path}: of the devices only cameras (/dev/videoN) can be watched")
        try:
            if not stat.S_ISCHR(os.stat(path).st_mode):
                raise OSError
        except OSError:
            raise SourceError(f"no camera at {path}") from None
        return CheckedSource(path, "device")

    # ------------------------------------------------------------------ local files

    def _local(self, path: str, operator: bool) -> CheckedSource:
        pattern = any(c in path for c in "*?[")
        if pattern and ".." in Path(path).parts:
            raise SourceError(f"{path}: a glob cannot climb out of its folder with '..'")
        base = _base(path)
        roots = self.folders
        if operator:
            roots = (*roots, Path(os.path.realpath(base)))
        if not self.folders and not operator:
            raise SourceError(
                f"{path}: local files cannot be added here; the server's operator can allow a folder with "
                "--allow-source"
            )
        if not _inside(base, roots):
            raise SourceError(f"{path}: not inside a folder this server allows streams from (--allow-source)")
        if pattern:
            matches = itertools.islice(glob.iglob(path), self.max_images + 1)
            return self._images(path, sorted(Path(p) for p in matches), roots)
        if os.path.isdir(path):
            entries = itertools.islice(os.scandir(path), self.max_images * 4 + 1)
            files = sorted(Path(e.path) for e in entries if Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
            return self._images(path, files, roots)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise SourceError(f"no such file: {path}") from None
        suffix = Path(path).suffix.lower()
        if not stat.S_ISREG(mode) or not _inside(path, roots):
            raise SourceError(f"{path}: not a regular file inside an allowed folder")
        if suffix in IMAGE_SUFFIXES:
            return self._images(path, [Path(path)], roots)
        if suffix not in VIDEO_SUFFIXES:
            raise SourceError(
                f"{path}: not a video or image file; accepted: {' '.join(sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES))}"
            )
        return CheckedSource(path, "file", {"protocol_whitelist": "file", "format_whitelist": FORMATS}, roots=roots)

    def _images(self, path: str, candidates: list[Path], roots: tuple[Path, ...]) -> CheckedSource:
        if len(candidates) > self.max_images:
            raise SourceError(f"{path}: more than {self.max_images:,} files; point at a smaller folder")
        files = tuple(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and self.readable(p, roots))
        if not files:
            raise SourceError(f"no images in {path} (regular {', '.join(sorted(IMAGE_SUFFIXES))} files)")
        return CheckedSource(path, "images", images=files, roots=roots)

    def readable(self, path: Path, roots: Iterable[Path]) -> bool:
        """Whether ``path`` is a regular file inside ``roots`` within the size limit (links resolved)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size <= self.max_file_bytes and _inside(path, roots)

    def read_image(self, path: Path, roots: Iterable[Path]) -> bytes:
        """The bytes of one image file of a folder or glob source, checked again as it is read (a file swapped
        for a link or a device since it was listed is refused); at most ``max_file_bytes`` are read."""
        if not _inside(path, roots):
            raise SourceError(f"{path.name}: no longer inside an allowed folder")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(f"{path.name}: not a regular file")
            if st.st_size > self.max_file_bytes:
                raise SourceError(f"{path.name}: {st.st_size:,} bytes, over the {self.max_file_bytes:,}-byte limit")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(self.max_file_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > self.max_file_bytes:
            raise SourceError(f"{path.name}: grew past the {self.max_file_bytes:,}-byte limit while read")
        return data


def is_local(url: str) -> bool:
    """Whether ``url`` names a local path (a file, folder or glob; not a camera URL or a device)."""
    scheme = _scheme(url)
    return scheme in ("", "file") and not (url[7:] if scheme else url).startswith("/dev/")


def within(url: str, folders: Iterable[str | Path]) -> bool:
    """Whether the local path ``url`` (a glob: its folder) lies inside one of ``folders`` (links resolved)."""
    path = url[7:] if url.startswith("file://") else url
    roots = [Path(os.path.realpath(Path(f).expanduser())) for f in folders]
    return ".." not in Path(path).parts and _inside(_base(path), roots)


def _base(path: str) -> Path:
    """The folder a glob searches (``/data/cam/img*.jpg`` → ``/data/cam``); a plain path itself."""
    prefix = re.split(r"[*?\[]", path)[0]
    if prefix == path:
        return Path(path)
    return Path(prefix) if prefix.endswith("/") else Path(prefix).parent


def _scheme(url: str) -> str:
    """The URL's scheme, lower-cased ("" for a path); never an error, whatever follows it."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else ""


def _options(url: str, shown: str) -> dict[str, str]:
    """The options FFmpeg reads from a URL: after its first '?', split on '&', names not decoded; a name given
    twice (FFmpeg takes the first, Python the last) or percent-encoded is refused."""
    raw = url.split("?", 1)[1] if "?" in url else ""
    found: dict[str, str] = {}
    for pair in filter(None, raw.split("&")):
        key, _, value = pair.partition("=")
        key = key.lower()
        if "%" in key or key in found:
            raise SourceError(f"{shown}: option names must be plain and given once")
        found[key] = value
    return found


OPERATOR = SourcePolicy()  # what a library caller gets: the path it names, the checks on type and size
