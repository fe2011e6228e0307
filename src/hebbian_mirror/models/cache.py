"""The weights cache and the downloader.

Weights resolution, in order: the weights cache (a flat folder of official file names: ``--weights-dir``,
``$HEBBIAN_MIRROR_WEIGHTS`` or ``~/.cache/hebbian-mirror/weights``) → download from the official URL with a
progress bar and a sha256 check → a clear :class:`WeightsNotFoundError` naming the file, the URL and the
folder to put it in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import ChecksumError, WeightsNotFoundError
from .registry import ModelSpec, RemoteFile

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_cached(spec: ModelSpec, weights_dir: Path) -> bool:
    return all((weights_dir / f.name).is_file() for f in spec.files)


def _missing_message(remote: RemoteFile, weights_dir: Path, reason: str) -> str:
    return (
        f"{remote.name} is not in the weights cache {weights_dir} and {reason}. "
        f"Download it from {remote.url} and put it in {weights_dir} "
        "(or point --weights-dir / HEBBIAN_MIRROR_WEIGHTS at a folder that has it)."
    )


def fetch(remote: RemoteFile, weights_dir: Path, offline: bool = False) -> Path:
    """Return the cached path of ``remote``, downloading it (progress bar, sha256 check) if needed."""
    target = weights_dir / remote.name
    if target.is_file():
        return target
    if offline:
        raise WeightsNotFoundError(_missing_message(remote, weights_dir, "downloads are off (offline mode)"))
    try:
        weights_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.name}.", suffix=".part", dir=weights_dir)
    except OSError as exc:
        raise WeightsNotFoundError(
            _missing_message(remote, weights_dir, f"the folder is not writable ({exc})")
        ) from exc
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": "hebbian-mirror"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.name) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if remote.sha256 and not got.startswith(remote.sha256.lower()):
            raise ChecksumError(
                f"{remote.name} from {remote.url} has sha256 {got}, expected {remote.sha256}: "
                "download corrupted or the file changed upstream; nothing was written to the cache"
            )
        tmp.replace(target)
        log.info("downloaded %s to %s (sha256 %s)", remote.name, target, got)
        return target
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = (
            f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        )
        raise WeightsNotFoundError(
            _missing_message(remote, weights_dir, f"could not be downloaded ({reason})")
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def ensure_weights(spec: ModelSpec, weights_dir: Path, offline: bool = False) -> list[Path]:
    """Paths of all of a model's files, fetched into the cache when missing. Every file that cannot be had
    (offline, or its download failed) is named in one error."""
    paths, problems = [], []
    for remote in spec.files:
        try:
            paths.append(fetch(remote, weights_dir, offline))
        except WeightsNotFoundError as exc:
            problems.append(str(exc))
    if problems:
        raise WeightsNotFoundError(" ".join(problems))
    shown = (f"{p} (a link to {p.resolve()})" if p.is_symlink() else str(p) for p in paths)
    log.info("%s: weights from %s", spec.name, ", ".join(shown))
    return paths
