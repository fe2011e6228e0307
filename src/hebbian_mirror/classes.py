"""Class names: the 80 COCO classes (shared by every COCO model), the one rule for matching names across
models and datasets, the display names people read, and the default dangerous classes."""

from __future__ import annotations

from collections.abc import Iterable

COCO_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# Other spellings of the same classes (Darknet's coco.names, VOC) → the COCO name.
ALIASES: dict[str, str] = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
    "hair dryer": "hair drier",
    "mobile phone": "cell phone",
    "smartphone": "cell phone",
}


# Display names for class names that are not words a user reads as is, e.g. the OD-WeaponDetection
# "Sohas" set's Spanish names. A dataset's or model's own display names win over these.
KNOWN_DISPLAY_NAMES = {
    "billete": "Banknote",
    "monedero": "Wallet",
    "tarjeta": "Bank card",
    "smartphone": "Smartphone",
    "pistol": "Pistol",
    "knife": "Knife",
}

# Classes that raise the UI's alert unless told otherwise.
DANGEROUS_CLASSES: tuple[str, ...] = ("pistol", "knife", "gun", "rifle")


def class_index(names: Iterable[str]) -> dict[str, int]:
    """Position of each name by :func:`canonical_name` (the first of two spellings of one class wins)."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(canonical_name(name), i)
    return index


def canonical_name(name: str) -> str:
    """The key two class names are matched by, everywhere (``--classes``, evaluation, dataset merge):
    case, spaces and underscores ignored, other spellings of COCO classes ("motorbike") mapped to COCO's."""
    key = " ".join(name.strip().lower().replace("_", " ").split())
    return ALIASES.get(key, ALIASES.get(key.replace(" ", ""), key))
