"""What a detector answers (:class:`Detections`, one image's; :class:`Detection`, one object) and the detector
interface every family implements.

A detector takes a **list** of RGB ``uint8`` images and returns one :class:`Detections` per image: batching is
the unit of work everywhere (CLI, evaluation, server).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from .classes import canonical_name, class_index
from .errors import InvalidOptionError
from .meta import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, Described, ModelMeta

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: ``box`` is ``(x1, y1, x2, y2)`` in original-image pixels. A detection a verifier
    looked at again also has the detector's own score and the verifier's (``score`` combines them)."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str
    detector_score: float | None = None
    verifier_score: float | None = None

    def parts(self) -> dict[str, float]:
        """A verified detection's two scores as the wire formats and events give them (empty otherwise)."""
        if self.verifier_score is None:
            return {}
        return {"detector_score": round(self.detector_score, 5), "verifier_score": round(self.verifier_score, 5)}

    def to_dict(self) -> dict:
        out = asdict(self) | {"box": list(self.box)}
        if self.verifier_score is None:
            del out["detector_score"], out["verifier_score"]
        return out


class Detections(Sequence[Detection]):
    """One image's detections, the one form they take from the detector to every consumer: an ``N×6`` float64
    array (``x1, y1, x2, y2, score, class id``; boxes in the image's pixels), the model's class names and the
    image's ``(width, height)``. Detectors produce it once; it crosses the worker pipe as is; OIP reads its
    arrays; the JSON encoders, alarms, ``held_by`` and drawing read it as :class:`Detection` records (indexing,
    iterating). ``verified``, from a model with a verifier stage, is ``N×2``: the detector's score and the
    verifier's per detection (NaN for one it did not look at)."""

    __slots__ = ("class_names", "data", "image_size", "verified")

    def __init__(
        self, data: Any, class_names: Sequence[str], image_size: tuple[int, int], verified: Any = None
    ) -> None:
        self.data = np.asarray(data, dtype=np.float64).reshape(-1, 6)
        self.class_names = tuple(class_names)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.verified = None if verified is None else np.asarray(verified, dtype=np.float64).reshape(-1, 2)
        if self.verified is not None and len(self.verified) != len(self.data):
            raise ValueError(f"{len(self.verified)} verified score pairs for {len(self.data)} detections")

    @classmethod
    def of(cls, records: Iterable[Detection], class_names: Sequence[str], image_size: tuple[int, int]) -> Detections:
        """From :class:`Detection` records (ground truth to draw, a JSON answer read back)."""
        return cls([(*d.box, d.score, d.class_id) for d in records], class_names, image_size)

    @classmethod
    def from_dicts(
        cls, items: Iterable[Mapping[str, Any]], class_names: Sequence[str], image_size: tuple[int, int]
    ) -> Detections:
        """From the native API's JSON detections (``box``, ``score``, ``class_id``)."""
        items = list(items)
        verified = None
        if any(d.get("verifier_score") is not None for d in items):
            verified = [(d.get("detector_score", d["score"]), _nan(d.get("verifier_score"))) for d in items]
        return cls([(*d["box"], d["score"], d["class_id"]) for d in items], class_names, image_size, verified)

    @property
    def boxes(self) -> np.ndarray:
        """``N×4`` x1, y1, x2, y2 in image pixels (a view)."""
        return self.data[:, :4]

    @property
    def scores(self) -> np.ndarray:
        return self.data[:, 4]

    @property
    def class_ids(self) -> np.ndarray:
        return self.data[:, 5].astype(np.int64)

    @property
    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_ids]

    def renamed(self, names: Mapping[str, str]) -> Detections:
        """The same detections under other class names (e.g. the model's display names); unnamed classes keep theirs."""
        return Detections(self.data, [names.get(c, c) for c in self.class_names], self.image_size, self.verified)

    def select(self, keep: Any) -> Detections:
        """The detections a boolean mask or index array keeps, in its order."""
        verified = None if self.verified is None else self.verified[keep]
        return Detections(self.data[keep], self.class_names, self.image_size, verified)

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> Detection: ...

    @overload
    def __getitem__(self, index: slice) -> Detections: ...

    def __getitem__(self, index: int | slice) -> Detection | Detections:
        if isinstance(index, slice):
            return self.select(index)
        x1, y1, x2, y2, score, class_id = self.data[index].tolist()
        label = self.class_names[int(class_id)]
        if self.verified is not None and not np.isnan(self.verified[index, 1]):
            detector, verifier = self.verified[index].tolist()
            return Detection((x1, y1, x2, y2), score, int(class_id), label, detector, verifier)
        return Detection((x1, y1, x2, y2), score, int(class_id), label)

    def __iter__(self) -> Iterator[Detection]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Detections):
            return self.image_size == other.image_size and list(self) == list(other)
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable array inside

    def __repr__(self) -> str:
        return f"Detections({len(self)} of {len(self.class_names)} classes, image {self.image_size})"


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True, slots=True)
class DetectOptions:
    """Per-call thresholds. ``classes`` keeps only those class ids (``None``: all).

    Two refinements of YOLO selection (Darknet models; :attr:`Detector.refines` and :attr:`Detector.augments` say
    whether a detector has them): ``merge`` makes each kept box the score-weighted mean of itself and the boxes of
    its class overlapping it by more than ``iou`` (box voting; free); ``augment`` also runs the image flipped, at
    0.8× the input size, and both, and selects over all four views (test-time augmentation: about 3× the time)."""

    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    max_det: int = DEFAULT_MAX_DET
    classes: frozenset[int] | None = None
    merge: bool = False
    augment: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf <= 1.0:
            raise InvalidOptionError(f"conf must be in [0, 1], got {self.conf}")
        if not 0.0 <= self.iou <= 1.0:
            raise InvalidOptionError(f"iou must be in [0, 1], got {self.iou}")
        if self.max_det < 1:
            raise InvalidOptionError(f"max_det must be at least 1, got {self.max_det}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is checked to exist."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InvalidOptionError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidOptionError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidOptionError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise InvalidOptionError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def resolve_classes(classes: str | Iterable[str | int] | None, class_names: Sequence[str]) -> frozenset[int] | None:
    """Turn class names and/or ids (a list, or comma-separated as in ``--classes person,3``) into a set of
    class ids (``None``: every class); names match as everywhere else (:func:`.classes.canonical_name`)."""
    if classes is None or classes == "":
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    by_name = class_index(class_names)
    out: set[int] = set()
    for item in classes:
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            idx = int(item)
            if not 0 <= idx < len(class_names):
                raise InvalidOptionError(f"class id {idx} out of range: this model has {len(class_names)} classes")
            out.add(idx)
            continue
        key = canonical_name(str(item))
        if not key:
            continue
        if key not in by_name:
            raise InvalidOptionError(f"unknown class {item!r}; this model knows: {', '.join(class_names)}")
        out.add(by_name[key])
    return frozenset(out)


class Detector(Described, ABC):
    """A loaded model. Subclasses set :attr:`meta`, :attr:`device` and :attr:`half` and implement
    :meth:`_detect_batch`; :meth:`detect` is the entry point."""

    family: str  # which backend runs it: darknet, torchvision, onnx
    meta: ModelMeta
    device: torch.device
    half: bool = False
    refines: bool = False  # honours DetectOptions.merge (YOLO selection)
    augments: bool = False  # honours DetectOptions.augment (YOLO selection, the network at a second input size)

    @property
    def display_names(self) -> dict[str, str]:
        return dict(self.meta.display_names)

    def detect(
        self,
        images: Sequence[np.ndarray],
        options: DetectOptions | Sequence[DetectOptions] | None = None,
    ) -> list[Detections]:
        """Detect objects in each image; returns one :class:`Detections` per image, in order.

        ``options`` is one set of thresholds for all images or one per image (a server batch mixes
        requests with different thresholds; the network still runs once on the whole batch).
        """
        if not images:
            return []
        if options is None or isinstance(options, DetectOptions):
            per_image = [options or DetectOptions()] * len(images)
        else:
            per_image = list(options)
            if len(per_image) != len(images):
                raise ValueError(f"{len(per_image)} option sets for {len(images)} images")
        if problem := refusal(self, any(o.merge for o in per_image), any(o.augment for o in per_image)):
            raise InvalidOptionError(problem)
        for img in images:
            if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
                raise TypeError("images must be H×W×3 uint8 RGB arrays (see hebbian_mirror.images.decode_image)")
        return self._detect_batch(list(images), per_image)

    @abstractmethod
    def _detect_batch(self, images: list[np.ndarray], options: list[DetectOptions]) -> list[Detections]:
        """Run the model on one batch; ``options`` has one entry per image."""

    def info(self) -> dict:
        """Plain description for listings and the API."""
        return {
            "name": self.name,
            "family": self.family,
            "classes": list(self.class_names),
            "display_names": self.display_names,
            "input_size": list(self.input_size),
            "resize": self.meta.resize.value,
            "letterbox": self.letterbox,
            "device": str(self.device),
            "half": self.half,
            "refines": self.refines,
            "augments": self.augments,
        }


def refusal(model: Detector | Any, merge: bool, augment: bool) -> str | None:
    """Why ``model`` (a detector, or what a worker process reports of one) cannot ``merge`` or ``augment`` as
    asked; ``None`` when it can."""
    if (merge or augment) and not model.refines:
        return f"merge and augment are for Darknet YOLO models; {model.name} is a {model.family} model"
    if augment and not model.augments:
        return (
            f"augment runs the network at a second input size; {model.name} is an ONNX model with one fixed input "
            "size: use the PyTorch model"
        )
    return None


def pick_half(half: bool, device: torch.device) -> bool:
    """Half precision runs on CUDA only; on other devices it is refused with a warning."""
    if half and device.type != "cuda":
        log.warning("half precision needs a CUDA device; running in float32 on %s", device)
        return False
    return half


def to_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    image_size: tuple[int, int],
) -> Detections:
    """Pack ``N×4`` boxes, scores and class ids (any device) of a ``(width, height)`` image into
    :class:`Detections`."""
    import torch

    rows = torch.cat([boxes.float(), scores.float()[:, None], labels.float()[:, None]], dim=1)
    return Detections(rows.cpu().numpy(), class_names, image_size)
