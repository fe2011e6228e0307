"""Finding image files and placing them in an output dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..images import IMAGE_SUFFIXES


def images_in(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def place(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst``: a hard link when the filesystem allows (no copy), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class UniqueNames:
    """Output file names, renamed on collision (merging datasets whose images share names)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, path: Path, prefix: str = "") -> str:
        name = path.name
        stem, suffix, n = path.stem, path.suffix, 1
        while name.lower() in self._used:
            name = f"{prefix or 'dup'}{n}_{stem}{suffix}"
            n += 1
        self._used.add(name.lower())
        return name
