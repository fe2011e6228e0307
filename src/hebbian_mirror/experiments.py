"""MLflow: every training run tracked (params, per-epoch metrics, plots, predictions, the checkpoint),
models registered with a ``champion`` alias that only moves to a better model, and ``models:/`` /
``runs:/`` URIs resolved to checkpoints for predict, evaluate and serve.

The default tracking store is embedded and local: ``sqlite:///mlflow.db`` in the working directory (artifacts
in ``./mlruns``). ``MLFLOW_TRACKING_URI`` points it anywhere else, e.g. a remote tracking server.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from .errors import TrackingError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
CHAMPION = "champion"
VAL_DATA_TAG = "hebbian_mirror.val_data"  # the validation split's fingerprint: only like is compared with like
MODEL_ARTIFACT = "model"  # name of the run's logged model (holding best.pt): runs:/ID/model
METRIC = "best_AP"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # a logged model's registered versions, as MLflow writes them
# The MLflow UI shows an experiment of this kind as machine learning (runs, metrics, models), not GenAI (traces).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


_SET: dict[str, str] = {}  # the registry URI this process last gave MLflow (which writes it to the environment)


def _mlflow():
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    mlflow.set_tracking_uri(uri)
    registry = os.environ.get("MLFLOW_REGISTRY_URI")
    if not registry or registry == _SET.get("registry"):  # not the user's: MLflow's own copy of an earlier call
        registry = uri
    mlflow.set_registry_uri(registry)
    _SET["registry"] = registry
    return mlflow


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, f"{key}.")
        else:
            out[key] = str(v)[:500]
    return out


class TrainingRun:
    """Log one training run: started when made, ended by ``__exit__`` (a context manager around
    :func:`hebbian_mirror.train.loop.train`, or :class:`~hebbian_mirror.train.experiment.MlflowTracking`'s
    hooks)."""

    def __init__(self, experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None) -> None:
        self.mlflow = _mlflow()
        found = self.mlflow.set_experiment(experiment)
        if EXPERIMENT_KIND[0] not in found.tags:  # a kind chosen in the UI stays
            self.mlflow.MlflowClient().set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        self.experiment_id = found.experiment_id
        self.run = self.mlflow.start_run(run_name=run_name, tags=tags)
        self.run_id = self.run.info.run_id
        self.model_id: str | None = None  # the logged model, once :meth:`log_model` ran

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")

    def log_params(self, params: dict) -> None:
        self.mlflow.log_params(_flatten(params))

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v is not None}
        for name, row in (metrics.get("per_class") or {}).items():
            for key in ("AP", "AP50"):
                if row.get(key) is not None:
                    values[f"{key}.{name}"] = float(row[key])
        self.mlflow.log_metrics(values, step=epoch + 1)

    def log_results(self, out: Path, summary: dict, dataset_stats: dict) -> None:
        """Plots, validation predictions, the best checkpoint, the summary and the dataset's stats."""
        self.mlflow.log_metric(METRIC, float(summary["best_ap"]))
        eval_dir = out / "best-eval"
        if eval_dir.is_dir():
            self.mlflow.log_artifacts(str(eval_dir), "evaluation")
        predictions = out / "predictions"
        if predictions.is_dir():
            self.mlflow.log_artifacts(str(predictions), "predictions")
        if (out / "best.pt").is_file():
            self.log_model(out / "best.pt", {METRIC: float(summary["best_ap"])})
        self.mlflow.log_artifact(str(out / "summary.json"))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "dataset_stats.json"
            path.write_text(json.dumps(dataset_stats, indent=2, default=str))
            self.mlflow.log_artifact(str(path))

    def log_model(self, checkpoint: Path, metrics: dict[str, float] | None = None, name: str = MODEL_ARTIFACT) -> str:
        """Log ``checkpoint`` as this run's MLflow logged model ``name`` (the UI's "Logged models"; loadable as
        ``runs:/ID/<name>`` and ``models:/<model id>``), with ``metrics``; returns its model id, the one
        :meth:`register` registers."""
        from mlflow.entities import LoggedModelStatus

        client = self.mlflow.MlflowClient()
        model = client.create_logged_model(
            self.experiment_id, name=name, source_run_id=self.run_id, model_type="hebbian-mirror detector"
        )
        try:
            client.log_model_artifact(model.model_id, str(checkpoint))
        except Exception:
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        for key, value in (metrics or {}).items():
            self.mlflow.log_metric(key, value, model_id=model.model_id)
        self.model_id = model.model_id
        return model.model_id

    def register(self, name: str, val_data: str | None = None) -> dict:
        """Register this run's model as a new version of ``name``; the ``champion`` alias moves to it only when
        its validation AP beats the current champion's on the same validation data (``val_data``: the split's
        fingerprint, kept as the run's tag), or when there is no champion yet. Returns what happened and why."""
        from mlflow.exceptions import MlflowException

        if self.model_id is None:
            raise TrackingError(f"cannot register {name}: this run has logged no model")
        client = self.mlflow.MlflowClient()
        try:
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="Hebbian Mirror detector (best.pt checkpoints)")
            version = client.create_model_version(
                name, source=f"models:/{self.model_id}", run_id=self.run_id, model_id=self.model_id
            )
            # what mlflow.register_model does too: the logged model lists its versions (the UI links them)
            versions = {MODEL_VERSIONS_TAG: json.dumps([{"name": name, "version": version.version}])}
            client.set_logged_model_tags(self.model_id, versions)
        except MlflowException as exc:
            raise TrackingError(f"could not register {name} in MLflow: {exc}") from exc
        if val_data:
            client.set_tag(self.run_id, VAL_DATA_TAG, val_data)
        mine = client.get_run(self.run_id).data.metrics.get(METRIC, float("-inf"))
        try:
            current = client.get_model_version_by_alias(name, CHAMPION)
            champion_run = client.get_run(current.run_id).data
            theirs, their_data = champion_run.metrics.get(METRIC, float("-inf")), champion_run.tags.get(VAL_DATA_TAG)
        except Exception:
            current, theirs, their_data = None, float("-inf"), None
        # a champion from before fingerprints (no tag) is compared as it always was
        comparable = current is None or their_data is None or val_data is None or val_data == their_data
        promoted = comparable and mine > theirs
        if mine == float("-inf"):
            why = f"not the champion: the run has no validation {METRIC}"
        elif current is None:
            why = "now the champion (the first version)"
        elif not comparable:
            why = "champion unchanged: it was measured on other validation data (evaluate both on one set)"
        else:
            why = "now the champion" if promoted else "champion unchanged (it was better)"
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, version.version)
        return {
            "why": why,
            "name": name,
            "version": int(version.version),
            "promoted": promoted,
            "AP": mine,
            "champion_AP": mine if promoted else theirs,
            "previous_champion": current.version if current else None,
        }


def run_page(experiment_id: str, run_id: str) -> tuple[str | None, str]:
    """Where to see a run: the ``mlflow ui`` command to start (``None`` for a tracking server) and the run's page,
    in the UI's machine-learning view (MLflow 3 UIs open in their GenAI view otherwise)."""
    uri = _mlflow().get_tracking_uri()
    remote = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if remote else "http://127.0.0.1:5000"
    page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    return (None if remote else f"mlflow ui --backend-store-uri {uri}"), page


def resolve(uri: str) -> Path:
    """Download a ``models:/NAME@alias``, ``models:/NAME/VERSION`` or ``runs:/ID/path`` to a local checkpoint."""
    from .errors import ModelNotFoundError

    mlflow = _mlflow()
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise ModelNotFoundError(f"cannot fetch {uri} from MLflow at {mlflow.get_tracking_uri()}: {exc}") from exc
    if local.is_file():
        return local
    found = sorted(local.rglob("*.pt"))
    if not found:
        raise ModelNotFoundError(f"{uri} holds no .pt checkpoint")
    return found[0]
