"""The one loader: a model source (zoo name, checkpoint, ONNX file, Darknet cfg/weights pair, MLflow URI)
→ a :class:`~hebbian_mirror.network.Network` (for training) or a :class:`~hebbian_mirror.detection.Detector`.
The CLI, the server, training's base model and tracking URIs all come through here."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from ..config import GENERIC_NAMES, ModelSettings, meaningful_name
from ..detection import Detector
from ..errors import ModelFormatError, WeightsNotFoundError
from ..families import family, for_file
from ..network import Network
from . import checkpoint
from .cache import ensure_weights
from .registry import OTHER_SOURCES, get_spec, registry
from .shipped import SHIPPED, shipped_path

log = logging.getLogger(__name__)


def load_detector(source: str | os.PathLike, settings: ModelSettings | None = None) -> Detector:
    """A ready-to-run detector for ``source`` on ``settings.device`` (fp16 with ``settings.half``); a checkpoint
    with a verifier stage runs it too, unless ``settings.verify`` is off."""
    settings = settings or ModelSettings()
    text = _resolve_uri(str(source))
    if (runs_as_is := for_file(text)) is not None:
        return runs_as_is.open(_existing(text, f"{runs_as_is.name.upper()} model"), device=settings.device)
    network, verifier = _network(text, settings)
    detector = family(network.family).detector(network, device=settings.device, half=settings.half)
    if verifier is not None and settings.verify:
        from ..verify.verifier import VerifiedDetector, Verifier

        return VerifiedDetector(detector, Verifier.from_record(verifier))
    return detector


def load_network(source: str | os.PathLike, settings: ModelSettings | None = None) -> Network:
    """The trainable network of a zoo model, a ``.pt`` checkpoint, a Darknet pair or an MLflow URI (a
    checkpoint's verifier stage is not part of it)."""
    return _network(_resolve_uri(str(source)), settings or ModelSettings())[0]


def _network(text: str, settings: ModelSettings) -> tuple[Network, dict | None]:
    """The network ``text`` names and its checkpoint's verifier record, if any."""
    if text in registry():
        return _zoo_network(text, settings), None
    if (packaged := shipped_path(text)) is not None:
        text = str(packaged)
    if text.endswith(".pt"):
        path = _existing(text, "checkpoint")
        log.info("loading checkpoint %s", path)
        record = checkpoint.read(path)
        network = checkpoint.from_record(record)
        if isinstance(spec := record.get("combine_with"), dict):  # packed: rebuilt with its base from the cache
            from ..darknet.combined import combine

            base = _network(str(spec.get("base")), settings)[0]
            network = combine(network, base, spec.get("taught", []), (str(path), str(spec.get("base"))))
        if network.meta.name.lower() in GENERIC_NAMES:  # an earlier version named models after their run folder
            network = replace(network, meta=replace(network.meta, name=meaningful_name(Path(path))))
        return network, record.get("verifier")
    if (runs_as_is := for_file(text)) is not None:
        raise ModelFormatError(
            f"{text} is an exported {runs_as_is.name.upper()} model: it can be run, not trained or exported"
        )
    return _darknet_pair_network(text), None


def prefetch(sources: list[str], settings: ModelSettings) -> None:
    """Check ``sources`` before a server listens: fetch the zoo models' weights, and refuse a name that is
    neither a zoo model, a file, nor a ``models:/`` / ``runs:/`` URI."""
    for source in sources:
        if source in registry():
            ensure_weights(get_spec(source), settings.weights_dir, settings.offline)
        elif source in SHIPPED:  # its file checked, and its base model's weights fetched
            base = checkpoint.read(shipped_path(source)).get("combine_with", {}).get("base")
            if base in registry():
                ensure_weights(get_spec(base), settings.weights_dir, settings.offline)
        elif not source.startswith(("models:/", "runs:/")):
            for part in (p.strip() for p in source.split(",")):
                if Path(part).suffix not in (".pt", ".cfg", ".weights") and for_file(part) is None:
                    get_spec(part)  # raises ModelNotFoundError listing the zoo and the other sources
                _existing(part, "model file")


def _resolve_uri(text: str) -> str:
    if text.startswith(("models:/", "runs:/")):
        from ..experiments import resolve

        return str(resolve(text))
    return text


def _existing(text: str, what: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} not found: {text}")
    return path


def _zoo_network(name: str, settings: ModelSettings) -> Network:
    spec = get_spec(name)
    paths = ensure_weights(spec, settings.weights_dir, settings.offline)
    return family(spec.family).from_files(spec.meta, spec.arch, paths)


def _darknet_pair_network(text: str) -> Network:
    """``x.cfg`` / ``x.weights`` (the other file beside it) or ``a.cfg,b.weights``; class names from a zoo
    model with the same cfg name, a ``.names`` file beside the cfg, or COCO's for 80 classes."""
    from ..darknet import load_net
    from ..darknet.detector import darknet_meta, default_class_names

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
            raise WeightsNotFoundError(
                f"model file not found: {p} (a Darknet model needs both a .cfg and a .weights; {OTHER_SOURCES})"
            )
    net = load_net(cfg, weights)
    twin = next((s for s in registry().values() if any(f.name == cfg.name for f in s.files)), None)
    classes = twin.classes if twin else default_class_names(cfg, net.num_classes)
    return Network("darknet", net, darknet_meta(net, cfg.stem, classes, twin.letterbox if twin else None))
