"""Shared fixtures and the environment of every tier: the product configured offline, its weights cache pointed at
../shared/weights (which the unit tier never reads: it runs without ../shared), events in a scratch folder.

Tiers: ``unit/`` (no ../shared, no process, the fake detector), ``models/`` (real weights and data from
../shared, in-process) and ``e2e/`` (servers and commands as processes, browsers, Ray, DDP, MQTT, RTSP, the
README); the last two refuse to start without ../shared (:func:`require_shared`)."""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()
WEIGHTS = SHARED / "weights"
PHOTOS = SHARED / "data" / "photos"
DOG = PHOTOS / "darknet-samples" / "dog.jpg"
KNIFE = PHOTOS / "weapons-in-hands" / "before1.jpg"
COCO_VAL = SHARED / "data" / "coco-val2017"
COCO128 = SHARED / "data" / "coco128"
DARKNET_MODELS = ["yolov4-tiny", "yolov3-tiny", "yolo-fastest-1.1", "yolo-fastest-1.1-xl"]

# The product's normal configuration, pointed at ../shared and forbidden to download.
os.environ["HEBBIAN_MIRROR_WEIGHTS"] = str(WEIGHTS)
os.environ["HEBBIAN_MIRROR_OFFLINE"] = "1"
os.environ.pop("HEBBIAN_MIRROR_CONFIG", None)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # tests never touch the network
os.environ["DO_NOT_TRACK"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Servers and commands the tests start keep their events (streams) in a scratch folder, not the user's.
os.environ["HEBBIAN_MIRROR_EVENTS_DIR"] = tempfile.mkdtemp(prefix="hm-test-events-")


def require_shared() -> None:
    """Never skip: without ../shared the models and e2e tiers cannot mean anything."""
    if not WEIGHTS.is_dir():
        raise pytest.UsageError(f"{SHARED} is missing: these tests need ../shared beside the repository (see README)")


@cache
def detector(name: str):
    """One loaded CPU detector per zoo model for the whole session."""
    from hebbian_mirror.config import load_settings
    from hebbian_mirror.models.loader import load_detector

    return load_detector(name, load_settings(device="cpu"))


@pytest.fixture(autouse=True)
def _no_mlflow_uris(monkeypatch):
    """MLflow writes the URIs it is given into the environment, where the next test (or a server it starts)
    would find them: each test starts without."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A small dataset: 12 training and 4 validation images of the hand-held set (3 classes), as YOLO."""
    from hebbian_mirror.datasets import load_splits, write_splits

    splits = load_splits(SHARED / "data" / "weapons" / "handheld" / "data.yaml")
    splits = {"train": splits["train"], "val": splits["val"]}
    splits["train"].samples = splits["train"].samples[:12]
    splits["val"].samples = splits["val"].samples[:4]
    return write_splits(splits, tmp_path_factory.mktemp("tiny") / "data", "yolo")


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Run the CLI in-process at 80 columns (rich's width when the output is not a terminal, as in a pipe or
    a CI log, whatever terminal runs the tests); returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from hebbian_mirror.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None):
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "80", **(env or {})})
        return result.exit_code, result.stdout, result.stderr

    return run
