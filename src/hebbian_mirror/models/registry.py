"""The model zoo as data: every named model with its metadata, official files and published accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from ..classes import COCO_CLASSES
from ..errors import ModelNotFoundError
from ..meta import Described, ModelMeta, Resize

# What else --model takes besides a zoo name (for error messages and help).
OTHER_SOURCES = (
    "or a trained .pt checkpoint, an exported .onnx file, a Darknet .cfg / .weights path (or 'a.cfg,b.weights'), "
    "or an MLflow models:/NAME@alias or runs:/ID/path URI"
)


@dataclass(frozen=True)
class RemoteFile:
    """A file the zoo can fetch. ``sha256`` is the full digest, or the prefix torchvision publishes in
    its file names; ``None`` when no digest is published."""

    name: str
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelSpec(Described):
    """A zoo model: its :class:`ModelMeta`, family, files and published accuracy (cf. torchvision's
    ``Weights.meta``). ``arch`` is the family's architecture (torchvision: builder and its categories)."""

    meta: ModelMeta
    family: str  # a name in hebbian_mirror.families.families()
    description: str
    published: dict[str, float]  # COCO box metrics as published, e.g. {"AP": 21.7, "AP50": 40.2}
    published_source: str
    files: tuple[RemoteFile, ...]
    arch: dict = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes


def _darknet(name, description, size, resize, published, source, weights_url, weights_sha, cfg_url, cfg_sha):
    files = (
        RemoteFile(f"{name}.weights", weights_url, weights_sha),
        RemoteFile(f"{name}.cfg", cfg_url, cfg_sha),
    )
    meta = ModelMeta(name, COCO_CLASSES, (size, size), Resize(resize))
    return ModelSpec(meta, "darknet", description, published, source, files)


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
    meta = ModelMeta(
        name,
        COCO_CLASSES,
        (size, size) if fixed else (size, 1333 if size == 800 else 640),
        Resize.STRETCH if fixed else Resize.SHORTER_SIDE,
    )
    return ModelSpec(
        meta=meta,
        family="torchvision",
        description=f"torchvision {builder} ({enum_name.split('.')[0]})",
        published={"AP": float(metrics["box_map"])} if "box_map" in metrics else {},
        published_source="torchvision weights metadata, COCO val2017",
        files=(RemoteFile(file_name, weights.url, digest),),
        arch={"builder": builder, "weights_enum": enum_name, "categories": tuple(weights.meta["categories"])},
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
            f"unknown model {name!r}. Zoo models: {', '.join(registry())}; {OTHER_SOURCES}"
        ) from None
