"""A training run tracked in MLflow: params, per-epoch metrics, results, and optional registration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..datasets import load_splits
from ..datasets.tools import stats
from ..tracking import TrainingRun
from .loop import TrainConfig, train


@dataclass
class TrackedRun:
    summary: dict
    run_id: str
    experiment: str
    registered: dict | None = None  # what :meth:`TrainingRun.register` reported


def train_tracked(
    cfg: TrainConfig,
    settings: Settings,
    resume: bool = False,
    experiment: str | None = None,
    register: str | None = None,
) -> TrackedRun:
    """Train inside an MLflow run (experiment: ``experiment``, default the dataset folder's name); register
    the best model under ``register`` when given."""
    name = experiment or Path(cfg.data).resolve().name
    with TrainingRun(name, run_name=Path(cfg.out).name) as run:
        run.log_params(cfg.to_dict())
        summary = train(cfg, settings, resume=resume, on_epoch=run.log_epoch)
        run.log_results(Path(cfg.out), summary, stats(load_splits(cfg.data)))
        registered = run.register(register) if register else None
        return TrackedRun(summary, run.run_id, name, registered)
