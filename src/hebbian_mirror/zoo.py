"""The model zoo: named models with their metadata, the weights cache and the downloader.

Weights resolution, in order: an explicit path → the weights cache (a flat folder of official file
names: ``--weights-dir``, ``$HEBBIAN_MIRROR_WEIGHTS`` or ``~/.cache/hebbian-mirror/weights``) →
download from the official URL with a progress bar and a sha256 check → a clear
:class:`WeightsNotFoundError` naming the file, the URL and the folder to put it in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from .coco import COCO_CLASSES
from .config import Settings
from .detection import Detector
from .errors import ChecksumError, ModelNotFoundError, WeightsNotFoundError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class RemoteFile:
    """A file the zoo can fetch. ``sha256`` is the full digest, or the prefix torchvision publishes in
    its file names; ``None`` when no digest is published."""

    name: str
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Metadata of a zoo model (cf. torchvision's ``Weights.meta``)."""

    name: str
    family: Literal["darknet", "torchvision"]
    description: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]  # (width, height); for R-CNN-style models (shorter, longer side)
    resize: str  # "stretch", "letterbox", or "shorter side N, longer <= M"
    published: dict[str, float]  # COCO box metrics as published, e.g. {"AP": 21.7, "AP50": 40.2}
    published_source: str
    files: tuple[RemoteFile, ...]
    builder: str | None = None  # torchvision model builder
    weights_enum: str | None = None  # torchvision weights enum member
    extra: dict = field(default_factory=dict)

    @property
    def letterbox(self) -> bool:
        return self.resize == "letterbox"


def _darknet(name, description, size, resize, published, source, weights_url, weights_sha, cfg_url, cfg_sha):
    files = (
        RemoteFile(f"{name}.weights", weights_url, weights_sha),
        RemoteFile(f"{name}.cfg", cfg_url, cfg_sha),
    )
    return ModelSpec(name, "darknet", description, COCO_CLASSES, (size, size), resize, published, source, files)


_PJREDDIE = "https://pjreddie.com/media/files/"
_PJ_CFG = "https://raw.githubusercontent.com/pjreddie/darknet/master/cfg/"
_AB_CFG = "https://raw.githubusercontent.com/AlexeyAB/darknet/master/cfg/"
_FASTEST = "https://github.com/dog-qiuqiu/Yolo-Fastest/raw/master/ModelZoo/yolo-fastest-1.1_coco/"

DARKNET_MODELS: tuple[ModelSpec, ...] = (
    _darknet(
        "yolov3",
        "YOLOv3 (pjreddie), Darknet-53",
        416,
        "letterbox",
        {"AP": 31.0, "AP50": 55.3},
        "YOLOv3 paper / pjreddie.com, COCO test-dev, 416²",
        _PJREDDIE + "yolov3.weights",
        "523e4e69e1d015393a1b0a441cef1d9c7659e3eb2d7e15f793f060a21b32f297",
        _PJ_CFG + "yolov3.cfg",
        "22489ea38575dfa36c67a90048e8759576416a79d32dc11e15d2217777b9a953",
    ),
    _darknet(
        "yolov3-tiny",
        "YOLOv3-tiny (pjreddie)",
        416,
        "letterbox",
        {"AP50": 33.1},
        "pjreddie.com, COCO test-dev, 416²",
        _PJREDDIE + "yolov3-tiny.weights",
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        _PJ_CFG + "yolov3-tiny.cfg",
        "84eb7a675ef87c906019ff5a6e0effe275d175adb75100dcb47f0727917dc2c7",
    ),
    _darknet(
        "yolov4-tiny",
        "YOLOv4-tiny (AlexeyAB), CSP-Darknet53-tiny",
        416,
        "stretch",
        {"AP": 21.7, "AP50": 40.2},
        "AlexeyAB/darknet README, COCO test-dev, 416²",
        "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights",
        "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
        _AB_CFG + "yolov4-tiny.cfg",
        "f858e3724962eedf3ac44e3b6cb3f0c3d9ed067c306bb831f539c578b924c90e",
    ),
    _darknet(
        "yolo-fastest-1.1",
        "Yolo-Fastest 1.1 (dog-qiuqiu), 0.35 M parameters",
        320,
        "stretch",
        {"AP50": 24.4},
        "dog-qiuqiu/Yolo-Fastest README, COCO val2017, 320²",
        _FASTEST + "yolo-fastest-1.1.weights",
        "1c445c42bbd6df63edea2cc69f99667b5650d663ca11e34b116240740cd42890",
        _FASTEST + "yolo-fastest-1.1.cfg",
        "f6df5775c1e862998cf69046eba9265be3ae84dfe8b2caab7529823f0795bf70",
    ),
    _darknet(
        "yolo-fastest-1.1-xl",
        "Yolo-Fastest 1.1 XL (dog-qiuqiu), 0.92 M parameters",
        320,
        "stretch",
        {"AP50": 34.3},
        "dog-qiuqiu/Yolo-Fastest README, COCO val2017, 320²",
        _FASTEST + "yolo-fastest-1.1-xl.weights",
        "fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5",
        _FASTEST + "yolo-fastest-1.1-xl.cfg",
        "c458427acc4fbeabceff4528ef7b65b066c0308ce599460f8ba299eba63abad3",
    ),
)

# name → (builder, weights enum member, input size, resize)
_TORCHVISION = {
    "fasterrcnn-resnet50-fpn": ("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1", 800),
    "fasterrcnn-resnet50-fpn-v2": ("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1", 800),
    "fasterrcnn-mobilenet-v3-large-fpn": (
        "fasterrcnn_mobilenet_v3_large_fpn",
        "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
        800,
    ),
    "fasterrcnn-mobilenet-v3-large-320-fpn": (
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1",
        320,
    ),
    "retinanet-resnet50-fpn": ("retinanet_resnet50_fpn", "RetinaNet_ResNet50_FPN_Weights.COCO_V1", 800),
    "retinanet-resnet50-fpn-v2": ("retinanet_resnet50_fpn_v2", "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1", 800),
    "fcos-resnet50-fpn": ("fcos_resnet50_fpn", "FCOS_ResNet50_FPN_Weights.COCO_V1", 800),
    "ssd300-vgg16": ("ssd300_vgg16", "SSD300_VGG16_Weights.COCO_V1", 300),
    "ssdlite320-mobilenet-v3-large": (
        "ssdlite320_mobilenet_v3_large",
        "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
        320,
    ),
}


def _torchvision_spec(name: str, builder: str, enum_name: str, size: int) -> ModelSpec:
    from torchvision.models import get_weight

    weights = get_weight(enum_name)
    metrics = weights.meta.get("_metrics", {}).get("COCO-val2017", {})
    file_name = weights.url.rsplit("/", 1)[-1]
    digest = file_name.rsplit("-", 1)[-1].split(".", 1)[0]  # torchvision: name-<sha256 prefix>.pth
    fixed = builder.startswith("ssd")
    return ModelSpec(
        name=name,
        family="torchvision",
        description=f"torchvision {builder} ({enum_name.split('.')[0]})",
        classes=COCO_CLASSES,
        input_size=(size, size) if fixed else (size, 1333 if size == 800 else 640),
        resize="stretch" if fixed else f"shorter side {size}, longer <= {1333 if size == 800 else 640}",
        published={"AP": float(metrics["box_map"])} if "box_map" in metrics else {},
        published_source="torchvision weights metadata, COCO val2017",
        files=(RemoteFile(file_name, weights.url, digest),),
        builder=builder,
        weights_enum=enum_name,
        extra={"categories": tuple(weights.meta["categories"])},
    )


@cache
def registry() -> dict[str, ModelSpec]:
    """Every zoo model by name (torchvision's metadata is read once, on first use)."""
    specs = {s.name: s for s in DARKNET_MODELS}
    for name, (builder, enum_name, size) in _TORCHVISION.items():
        specs[name] = _torchvision_spec(name, builder, enum_name, size)
    return specs


def get_spec(name: str) -> ModelSpec:
    try:
        return registry()[name]
    except KeyError:
        raise ModelNotFoundError(
            f"unknown model {name!r}. Zoo models: {', '.join(registry())}; "
            "or give a path to a Darknet .cfg / .weights file"
        ) from None


# ---------------------------------------------------------------------------------------------
# weights cache and downloader


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


def ensure_weights(spec: ModelSpec, settings: Settings) -> list[Path]:
    """Paths of all of a model's files, fetched into the cache when missing."""
    return [fetch(f, settings.weights_dir, settings.offline) for f in spec.files]


# ---------------------------------------------------------------------------------------------
# loading


def load_detector(model: str | os.PathLike, settings: Settings | None = None) -> Detector:
    """Load a zoo model by name, a trained checkpoint (``best.pt``), or a Darknet model by path (``x.cfg``,
    ``x.weights`` with the other file beside it, or ``x.cfg,y.weights``)."""
    from .darknet import DarknetDetector

    settings = settings or Settings()
    text = str(model)
    opts = {"device": settings.device, "half": settings.half}
    if text in registry():
        spec = get_spec(text)
        paths = ensure_weights(spec, settings)
        if spec.family == "darknet":
            return DarknetDetector.from_files(
                paths[1], paths[0], class_names=spec.classes, name=spec.name, letterbox=spec.letterbox, **opts
            )
        from .backends.torchvision import TorchvisionDetector

        return TorchvisionDetector.from_spec(spec, paths[0], **opts)
    if text.startswith(("models:/", "runs:/")):
        from .tracking import resolve

        text = str(resolve(text))
    if text.endswith(".onnx"):
        from .backends.onnx import OnnxDetector

        if not Path(text).expanduser().is_file():
            raise WeightsNotFoundError(f"ONNX model not found: {text}")
        return OnnxDetector(Path(text).expanduser(), device=settings.device)
    if text.endswith(".pt"):
        from .train.checkpoint import load_detector as load_checkpoint

        if not Path(text).expanduser().is_file():
            raise WeightsNotFoundError(f"checkpoint not found: {text}")
        return load_checkpoint(Path(text).expanduser(), **opts)
    cfg, weights = _darknet_pair(text)
    zoo_twin = next((s for s in DARKNET_MODELS if s.files[1].name == cfg.name), None)
    letterbox = zoo_twin.letterbox if zoo_twin else None
    names = zoo_twin.classes if zoo_twin else None
    return DarknetDetector.from_files(cfg, weights, class_names=names, letterbox=letterbox, **opts)


def _darknet_pair(text: str) -> tuple[Path, Path]:
    if "," in text:
        first, second = (Path(p.strip()).expanduser() for p in text.split(",", 1))
        cfg, weights = (first, second) if first.suffix == ".cfg" else (second, first)
    else:
        path = Path(text).expanduser()
        if path.suffix not in (".cfg", ".weights"):
            get_spec(text)  # raises ModelNotFoundError listing the zoo
        cfg, weights = path.with_suffix(".cfg"), path.with_suffix(".weights")
    for p in (cfg, weights):
        if not p.is_file():
            raise WeightsNotFoundError(f"model file not found: {p} (a Darknet model needs both a .cfg and a .weights)")
    return cfg, weights
