"""Alarm rules: when a tracked object of a dangerous class becomes an alarm.

A detection *counts* when its score reaches the rule's ``min_score``, its box passes the area (``min_area``,
``max_area``) and shape (``min_ratio``, ``max_ratio``: width / height) filters, its centre lies in one of the
rule's zones (anywhere when there are none) and in none of its masks, it is held by a person when the rule says
``held``, and it has moved within the last ``stationary_after`` seconds (a knife lying on a counter stops counting
until it is picked up). Zones and masks are polygons in pixels or, when every coordinate is within 0–1, in
fractions of the frame; an area of at most 1 is a fraction of the frame, above 1 pixels.

With ``class_lock`` (the default) a tracked object is of the class its recent frames voted for
(:mod:`.tracking`): one frame of "cell phone" neither counts nor breaks a pistol's streak, one frame of "pistol" on
a phone is not a pistol. A tracked object raises the alarm either after ``frames`` successive processed frames in
which it counts (Olmos et al. 2018: five frames), or, with ``median_of`` = K, once the median of its last K
counting scores reaches ``threshold`` (Frigate's rule). The alarm ends after ``end_after`` processed frames in
which no object of the class counts, and a new one for the same class on the same stream is held back for
``cooldown`` seconds after that.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from ..classes import DANGEROUS_CLASSES, canonical_name
from ..config import AlarmSettings
from ..errors import RuleError

log = logging.getLogger(__name__)

Point = tuple[float, float]
Polygon = tuple[Point, ...]
Size = tuple[int, int]  # a frame's (width, height)

DEFAULT_FRAMES = 5
DEFAULT_MIN_SCORE = 0.5
DEFAULT_END_AFTER = 10
DEFAULT_STATIONARY_AFTER = 30.0  # docs/alarms.md: chosen on the shop clips
MAX_ZONES, MAX_ZONE_POINTS = 16, 100  # per rule; zones are checked for every detection of every frame
MAX_FRAMES = 1000  # frames, median_of
MAX_END_AFTER = 10_000
MAX_COOLDOWN = 7 * 86400.0
MAX_RULES = 100


def point_in_polygon(point: Point, polygon: Polygon) -> bool:
    """Even-odd ray casting; points on an edge may fall either way."""
    x, y = point
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def parse_zone(value: str | Sequence) -> Polygon:
    """A polygon from ``"x1,y1,x2,y2,x3,y3,..."`` or ``[[x, y], ...]`` (pixels of the stream's frames)."""
    if isinstance(value, str):
        if len(value) > MAX_ZONE_POINTS * 40:
            raise RuleError(f"a zone has at most {MAX_ZONE_POINTS} points")
        try:
            numbers = [float(v) for v in value.replace(";", ",").split(",") if v.strip()]
        except ValueError as exc:
            raise RuleError(f"zone {value!r}: expected x1,y1,x2,y2,x3,y3,... in pixels") from exc
        if len(numbers) % 2:
            raise RuleError(f"zone {value!r}: an odd count of numbers; expected x,y pairs")
        points = list(zip(numbers[::2], numbers[1::2], strict=True))
    else:
        if not isinstance(value, list | tuple) or len(value) > MAX_ZONE_POINTS:
            raise RuleError(f"a zone is a list of at most {MAX_ZONE_POINTS} [x, y] points")
        try:
            points = [(_number(p[0]), _number(p[1])) for p in value if len(p) == 2]
        except (TypeError, ValueError, IndexError, KeyError):
            points = []
        if len(points) != len(value):
            raise RuleError(f"zone {str(value)[:80]}: expected a list of [x, y] points")
    if len(points) > MAX_ZONE_POINTS:
        raise RuleError(f"a zone has at most {MAX_ZONE_POINTS} points, got {len(points)}")
    if not all(math.isfinite(c) and abs(c) <= 1e6 for p in points for c in p):
        raise RuleError("zone points must be finite numbers (pixels, or fractions of the frame within 0-1)")
    if len(points) < 3:
        raise RuleError(f"zone {str(value)[:80]}: a polygon needs at least 3 points")
    return tuple(points)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return float(value)


def parse_zones(value: Any, what: str = "zones") -> tuple[Polygon, ...]:
    """A rule's ``zones`` (or ``masks``): a list of at most :data:`MAX_ZONES` polygons (each as :func:`parse_zone`
    takes it)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise RuleError(f"{what} must be a list of polygons, got {type(value).__name__}")
    if len(value) > MAX_ZONES:
        raise RuleError(f"a rule has at most {MAX_ZONES} {what}, got {len(value)}")
    return tuple(parse_zone(z) for z in value)


def relative(polygon: Polygon) -> bool:
    """Whether a polygon is in fractions of the frame (every coordinate within 0–1) rather than pixels."""
    return all(0.0 <= c <= 1.0 for p in polygon for c in p)


@lru_cache(maxsize=256)
def in_pixels(polygons: tuple[Polygon, ...], size: Size | None) -> tuple[Polygon, ...]:
    """``polygons`` in pixels of a frame of ``size`` (frame-relative ones scaled; pixel ones as they are)."""
    if size is None:
        return polygons
    w, h = size
    return tuple(tuple((x * w, y * h) for x, y in p) if relative(p) else p for p in polygons)


@dataclass(frozen=True)
class AlarmRule:
    """When detections of ``label`` raise an alarm (see the module docstring)."""

    label: str
    min_score: float = DEFAULT_MIN_SCORE
    frames: int = DEFAULT_FRAMES
    median_of: int | None = None
    threshold: float | None = None  # median rule: defaults to min_score
    zones: tuple[Polygon, ...] = field(default=())
    min_area: float = 0.0
    cooldown: float = 0.0
    end_after: int = DEFAULT_END_AFTER
    masks: tuple[Polygon, ...] = field(default=())  # detections whose centre lies in one are ignored
    max_area: float | None = None
    min_ratio: float | None = None  # box width / height
    max_ratio: float | None = None
    held: bool = False  # only an object a person holds counts
    stationary_after: float | None = DEFAULT_STATIONARY_AFTER  # seconds without moving; 0 or None: never
    class_lock: bool = True  # a track's class decided over its recent frames, not frame by frame

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label or len(self.label) > 100:
            raise RuleError("an alarm rule needs a class label (a name of at most 100 characters)")
        for name, most in (("frames", MAX_FRAMES), ("end_after", MAX_END_AFTER), ("median_of", MAX_FRAMES)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value > most):
                raise RuleError(f"{self.label}: {name} must be a whole number of at most {most}, got {value!r}")
        numbers = (
            ("min_score", 1.0),
            ("threshold", 1.0),
            ("min_area", 1e12),
            ("max_area", 1e12),
            ("min_ratio", 1e6),
            ("max_ratio", 1e6),
            ("cooldown", MAX_COOLDOWN),
            ("stationary_after", MAX_COOLDOWN),
        )
        for name, most in numbers:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise RuleError(f"{self.label}: {name} must be a number, got {value!r}")
            if value is not None and not (math.isfinite(value) and value <= most):
                raise RuleError(f"{self.label}: {name} must be a finite number of at most {most:g}, got {value!r}")
        if not 0.0 <= self.min_score <= 1.0:
            raise RuleError(f"{self.label}: min_score must be in [0, 1], got {self.min_score}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise RuleError(f"{self.label}: threshold must be in [0, 1], got {self.threshold}")
        if self.frames < 1 or self.end_after < 1:
            raise RuleError(f"{self.label}: frames and end_after must be at least 1")
        if self.median_of is not None and self.median_of < 1:
            raise RuleError(f"{self.label}: median_of must be at least 1")
        for name in ("min_area", "max_area", "min_ratio", "max_ratio", "cooldown", "stationary_after"):
            if (getattr(self, name) or 0) < 0:
                raise RuleError(f"{self.label}: {name} cannot be negative")
        for name in ("held", "class_lock"):
            if not isinstance(getattr(self, name), bool):
                raise RuleError(f"{self.label}: {name} must be true or false, got {getattr(self, name)!r}")

    @property
    def needed(self) -> int:
        """Counting frames an object needs before it can raise the alarm."""
        return self.median_of or self.frames

    def counts(self, box: Sequence[float], score: float, size: Size | None = None) -> bool:
        """Whether a detection of this class counts towards the alarm by its score, box and place in a frame of
        ``size`` (needed for frame-relative zones, masks and areas). Holding and standing still are the
        tracker's to check (:meth:`AlarmTracker.update`)."""
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        if score < self.min_score:
            return False
        frame = size[0] * size[1] if size else None
        area = w * h
        if self.min_area and area < _pixels(self.min_area, frame):
            return False
        if self.max_area is not None and area > _pixels(self.max_area, frame):
            return False
        ratio = w / h if h > 0 else math.inf
        if (self.min_ratio is not None and ratio < self.min_ratio) or (
            self.max_ratio is not None and ratio > self.max_ratio
        ):
            return False
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        if self.masks and any(point_in_polygon(centre, m) for m in in_pixels(self.masks, size)):
            return False
        return not self.zones or any(point_in_polygon(centre, z) for z in in_pixels(self.zones, size))

    def fires(self, scores: Sequence[float], streak: int) -> bool:
        """Whether an object with these recent counting ``scores`` and ``streak`` successive counting frames
        raises the alarm."""
        if self.median_of is None:
            return streak >= self.frames
        last = sorted(list(scores)[-self.median_of :])
        if len(last) < self.median_of:
            return False
        mid = len(last) // 2
        median = last[mid] if len(last) % 2 else (last[mid - 1] + last[mid]) / 2
        return median >= (self.threshold if self.threshold is not None else self.min_score)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("zones", "masks"):
            data[name] = [[list(p) for p in z] for z in getattr(self, name)]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmRule:
        """A rule from JSON / TOML (``zones`` as lists of points or ``"x,y,..."`` strings); unknown keys are
        errors."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise RuleError(f"unknown alarm rule field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        values = dict(data)
        values["zones"] = parse_zones(values.get("zones"))
        values["masks"] = parse_zones(values.get("masks"), "masks")
        try:
            return cls(**values)
        except TypeError as exc:
            raise RuleError(f"alarm rule {dict(data)!r}: {exc}") from exc


def _pixels(area: float, frame: int | None) -> float:
    """An area in pixels: at most 1 is a fraction of a ``frame`` of that many pixels (when known)."""
    return area * frame if area <= 1.0 and frame else area


def make_rules(labels: Iterable[str], **common: Any) -> list[AlarmRule]:
    """One rule per label, sharing the given settings (``None`` values mean the default)."""
    kwargs = {k: v for k, v in common.items() if v is not None}
    for name in ("zones", "masks"):
        if name in kwargs:
            kwargs[name] = parse_zones(kwargs[name], name)
    rules = [AlarmRule(label=label.strip(), **kwargs) for label in labels if label.strip()]
    if not rules:
        raise RuleError("no alarm classes given: name at least one, e.g. --alarm pistol,knife")
    return rules


def stream_rules(settings: AlarmSettings, class_names: list[str], alarm: list[str] | None = None) -> list[AlarmRule]:
    """The alarm rules for a stream: the given or configured classes, matched to the model's own names the way
    every class name is matched (``Pistol``, ``pistol`` and ``PISTOL`` are one class). :class:`RuleError` naming
    the classes the model does not know, except those of the default list (it names more than any one model
    knows), and when none is left."""
    wanted = alarm if alarm is not None else settings.alarm
    default = alarm is None and list(wanted) == list(DANGEROUS_CLASSES)
    known, unknown = model_classes(wanted, class_names)
    if unknown and not default:
        raise RuleError(
            f"alarm class(es) {', '.join(unknown)}: the model does not know them; it knows: {', '.join(class_names)}"
        )
    if not known:
        raise RuleError(
            f"the model knows none of the alarm classes {', '.join(wanted) or '(none given)'}; it knows: "
            f"{', '.join(class_names)}"
        )
    return make_rules(
        known,
        min_score=settings.alarm_min_score,
        frames=settings.alarm_frames,
        median_of=settings.alarm_median_of,
        end_after=settings.alarm_end_after,
        cooldown=settings.alarm_cooldown,
        min_area=settings.alarm_min_area,
    )


def model_classes(names: Iterable[str], class_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(``names`` the model knows, spelled as the model spells them; those it does not know)."""
    by_key = {canonical_name(c): c for c in class_names}
    known = [by_key[canonical_name(n)] for n in names if canonical_name(n) in by_key]
    return list(dict.fromkeys(known)), [n for n in names if canonical_name(n) not in by_key]
