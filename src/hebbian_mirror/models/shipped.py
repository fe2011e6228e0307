"""The product's own trained models, shipped in the package (``models/weights/``) and loaded by name, offline.

A shipped file is a *packed* checkpoint (:func:`pack`): a model combined with a zoo base keeps only its
fine-tuned network and the base's name (the base's weights come from the weights cache, as for the zoo model
itself, and the combined model is rebuilt at load); weights are stored in float16 (computed in float32); a
verifier stage stays inside. Each file's sha256 is listed here and checked before it is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ChecksumError, ModelFormatError
from ..network import Network
from . import checkpoint
from .cache import sha256_of

FOLDER = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """A model that comes with the product: its file in :data:`FOLDER`, digest and measured accuracy."""

    name: str
    file: str
    sha256: str
    description: str
    base: str  # the zoo model it extends (its weights come from the weights cache)
    classes: int  # how many it detects: the base's and the new ones
    new_classes: tuple[str, ...]
    measured: dict[str, float] = field(default_factory=dict)  # validation AP50 per class, as served by default
    card: str = ""  # its model card, relative to the repository

    @property
    def path(self) -> Path:
        return FOLDER / self.file


SHIPPED: dict[str, ShippedModel] = {
    model.name: model
    for model in (
        ShippedModel(
            name="weapons",
            file="weapons.pt",
            sha256="1327c34e7b608733889ac011a60db4ee368b42898e449e59b0b3ff544601535d",
            description="Pistols and knives, hand-held look-alikes (cell phone, wallet, AirPods) and COCO's 80 "
            "classes, a verifier behind pistol and knife: recipes/weapons.yaml, 8 epochs (docs/model-card-weapons.md)",
            base="yolov4-tiny",
            classes=83,
            new_classes=("pistol", "airpods", "wallet"),
            measured={"pistol": 0.728, "knife": 0.569, "cell phone": 0.698, "wallet": 0.975, "airpods": 0.985},
            card="docs/model-card-weapons.md",
        ),
    )
}


@cache
def shipped_path(name: str) -> Path | None:
    """The checked file of the shipped model ``name``, ``None`` when no shipped model has that name."""
    model = SHIPPED.get(name)
    if model is None:
        return None
    if not model.path.is_file():
        raise ModelFormatError(f"the shipped model {name} is missing: {model.path} (a broken install?)")
    if (digest := sha256_of(model.path)) != model.sha256:
        raise ChecksumError(f"{model.path}: sha256 {digest}, expected {model.sha256} (a damaged file)")
    return model.path


def pack(record: dict[str, Any], network: Network) -> dict[str, Any]:
    """``record`` (a checkpoint's) packed to ship: a combined model whose base is a zoo model keeps only its
    fine-tuned network and ``combine_with`` (the base's name and taught class names); floating-point weights in
    float16. ``network`` is the record's, loaded."""
    from ..darknet.combined import CombinedNet

    module = network.module
    out = {k: record[k] for k in ("verifier", "interpolation", "averaged") if k in record}  # nothing of training
    if isinstance(module, CombinedNet):
        base = module.sources.get("base", "")
        if not base or base.endswith((".pt", ".cfg", ".weights")):
            raise ModelFormatError(f"a packed combined model needs a zoo base model, not {base or 'an unknown one'}")
        tuned = Network(network.family, module.tuned, network.meta, network.arch)
        out |= checkpoint.to_record(tuned) | {
            "combine_with": {"base": base, "taught": [network.meta.classes[i] for i in module.taught]}
        }
    else:
        out |= checkpoint.to_record(network)
    out["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in out["state_dict"].items()}
    return out
