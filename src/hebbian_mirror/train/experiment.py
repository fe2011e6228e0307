"""A training run tracked in MLflow (a :class:`~.callbacks.Callback`): params, per-epoch metrics, results, and
optional registration."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import default_model_name
from ..datasets.tools import fingerprint, stats
from ..experiments import TrainingRun
from .callbacks import Callback, TrainResult
from .loop import Prepared
from .run_config import TrainConfig


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


class MlflowTracking(Callback):
    """The run inside an MLflow run (experiment: ``experiment``, default the dataset's name): params, per-epoch
    metrics, results; what the recipe's step measured as ``final.*`` metrics, and the models it made (combined,
    verified) logged (``runs:/ID/combined``, ``runs:/ID/verified``), the served one registered instead of
    ``best.pt``; registered under ``register``
    when given. The Trainer opens it only once the run has loaded what it needs: a run that cannot start leaves
    nothing in MLflow."""

    def __init__(self, experiment: str | None = None, register: str | None = None) -> None:
        self.experiment, self.register = experiment, register
        self.run: TrainingRun | None = None

    def on_start(self, trainer, prepared: Prepared) -> None:
        cfg, resume = trainer.config, trainer.resume
        self.name = self.experiment or dataset_name(cfg.data)
        self.splits = prepared.splits
        self.val = prepared.val_ds  # what the run validates on: the champion is compared on the same
        tags = {"out": str(Path(cfg.out).resolve()), "base_model": cfg.model, "data": str(Path(cfg.data).resolve())}
        self.run = TrainingRun(self.name, run_name=run_name(cfg), tags=tags | ({"resumed": "true"} if resume else {}))
        try:
            self.run.log_params(cfg.to_dict())
        except BaseException as exc:  # the run exists: end it as failed, not left running
            self.on_exit(exc)
            raise

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        self.run.log_epoch(epoch, metrics)

    def on_trained(self, trainer, result: TrainResult) -> None:
        self.run.log_results(Path(result.config.out), result.summary, stats(self.splits))

    def on_end(self, trainer, result: TrainResult) -> None:
        run, finished = self.run, result.finished
        run.mlflow.log_metrics({f"final.{k}": v for k, v in finished.items() if isinstance(v, float)})
        # the served model is registered instead of best.pt (the last logged); the champion is still chosen by
        # the run's validation AP
        if "combined_model" in finished:
            metrics = {"combined_val_AP50": finished["combined_val"]}
            run.log_model(Path(finished["combined_model"]), metrics, name="combined")
        if "verified_model" in finished:
            metrics = {"verified_val_AP50": finished["verified_val"]}
            run.log_model(Path(finished["verified_model"]), metrics, name="verified")
        registered = None
        if self.register and result.config.max_steps:
            registered = {"name": self.register, "skipped": "a --max-steps run is a quick look: not registered"}
        elif self.register:
            registered = run.register(self.register, fingerprint(self.val) if self.val is not None else None)
        result.run = TrackedRun(
            result.summary, run.run_id, run.run.info.run_name, self.name, run.experiment_id, registered, finished
        )

    def on_exit(self, error: BaseException | None) -> None:
        if self.run is not None:
            self.run.__exit__(type(error) if error else None, error, None)
            self.run = None
