"""Parser for Darknet ``.cfg`` files: an ordered list of ``[section]`` blocks of ``key=value`` options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelFormatError


@dataclass
class Section:
    """One ``[type]`` block; ``line`` is where it starts, for error messages."""

    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def get_int(self, key: str, default: int | None = None) -> int:
        return int(float(self._get(key, default)))

    def get_float(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, default))

    def get_str(self, key: str, default: str | None = None) -> str:
        return str(self._get(key, default))

    def get_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        raw = self.options.get(key)
        if raw is None:
            if default is None:
                raise ModelFormatError(f"[{self.type}] at line {self.line}: missing '{key}'")
            return list(default)
        return [int(float(v)) for v in raw.split(",") if v.strip()]

    def get_floats(self, key: str) -> list[float]:
        return [float(v) for v in self.get_str(key).split(",") if v.strip()]

    def _get(self, key: str, default):
        value = self.options.get(key, default)
        if value is None:
            raise ModelFormatError(f"[{self.type}] at line {self.line}: missing '{key}'")
        return value


def parse_cfg(text: str, source: str = "cfg") -> list[Section]:
    """Parse cfg text; the first section must be ``[net]`` (or ``[network]``)."""
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelFormatError(f"{source}:{lineno}: malformed section header {raw.strip()!r}")
            sections.append(Section(type=line[1:-1].strip().lower(), line=lineno))
            continue
        if "=" not in line or not sections:
            raise ModelFormatError(f"{source}:{lineno}: expected 'key=value' inside a section, got {raw.strip()!r}")
        key, value = line.split("=", 1)
        sections[-1].options[key.strip()] = value.strip()
    if not sections or sections[0].type not in ("net", "network"):
        raise ModelFormatError(f"{source} is not a Darknet cfg: it must start with a [net] section")
    if len(sections) < 2:
        raise ModelFormatError(f"{source} has no layers after [net]")
    return sections


def read_cfg(path: str | Path) -> list[Section]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ModelFormatError(f"cannot read cfg file {path}: {exc}") from exc
    return parse_cfg(text, source=str(path))


def to_text(sections: list[Section]) -> str:
    """Write sections back as cfg text (comments are not kept)."""
    blocks = []
    for sec in sections:
        lines = [f"[{sec.type}]"] + [f"{k}={v}" for k, v in sec.options.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
