"""A training run tracked in MLflow: params, per-epoch metrics, results, and optional registration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings, default_model_name
from ..datasets.tools import stats
from ..experiments import TrainingRun
from .loop import TrainConfig, prepare, train


@dataclass
class TrackedRun:
    summary: dict
    run_id: str
    run_name: str
    experiment: str
    experiment_id: str
    registered: dict | None = None  # what :meth:`TrainingRun.register` reported
    finished: dict = field(default_factory=dict)  # what the ``finish`` step reported


def dataset_name(data: str | Path) -> str:
    """A dataset's name: its folder's (``runs/weapons4/data.yaml`` → ``weapons4``)."""
    path = Path(data).resolve()
    return path.parent.name if path.is_file() or path.suffix in (".yaml", ".yml", ".json") else path.name


def run_name(cfg: TrainConfig) -> str:
    """``<model>-<dataset>-<YYYYmmdd-HHMMSS>``: distinct runs, readable in the MLflow UI."""
    return f"{default_model_name(cfg.model)}-{dataset_name(cfg.data)}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_tracked(
    cfg: TrainConfig,
    settings: Settings,
    resume: bool = False,
    experiment: str | None = None,
    register: str | None = None,
    finish: Callable[[dict], dict] | None = None,
) -> TrackedRun:
    """Train inside an MLflow run (experiment: ``experiment``, default the dataset's name); register the best
    model under ``register`` when given. ``finish(summary)``, when given, runs after training inside the run: its
    numbers are logged as metrics, and a ``model`` it names (a combined model) is logged (``runs:/ID/combined``) and
    registered instead.
    The dataset and the base model are loaded first: a run that cannot start leaves nothing in MLflow."""
    prepared = prepare(cfg, settings, resume)
    name = experiment or dataset_name(cfg.data)
    tags = {"out": str(Path(cfg.out).resolve()), "base_model": cfg.model, "data": str(Path(cfg.data).resolve())}
    with TrainingRun(name, run_name=run_name(cfg), tags=tags | ({"resumed": "true"} if resume else {})) as run:
        run.log_params(cfg.to_dict())
        summary = train(cfg, settings, resume=resume, on_epoch=run.log_epoch, prepared=prepared)
        run.log_results(Path(cfg.out), summary, stats(prepared.splits))
        finished = finish(summary) if finish else {}
        run.mlflow.log_metrics({f"final.{k}": v for k, v in finished.items() if isinstance(v, float)})
        if "model" in finished:  # registered instead of best.pt; the champion is still chosen by validation AP
            run.log_model(Path(finished["model"]), {"combined_val_AP50": finished["combined_val"]}, name="combined")
        registered = run.register(register) if register else None
        return TrackedRun(summary, run.run_id, run.run.info.run_name, name, run.experiment_id, registered, finished)
