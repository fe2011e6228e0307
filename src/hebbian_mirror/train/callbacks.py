"""What runs around a training run (on rank 0): the :class:`Callback` hooks, the :class:`TrainResult` they see, and
the recipe's after-training step as one of them (MLflow tracking is another: :class:`.experiment.MlflowTracking`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import HebbianMirrorError
from .run_config import TrainConfig

if TYPE_CHECKING:
    from .loop import Prepared
    from .recipe import Recipe

Trainer = Any  # .trainer.Trainer (which imports this module)


@dataclass
class TrainResult:
    """What a run left: its summary (``summary.json``), what the recipe's after-training step measured (retention,
    the combined model), and its MLflow run when tracked."""

    config: TrainConfig
    summary: dict
    finished: dict = field(default_factory=dict)
    run: Any = None  # .experiment.TrackedRun, when tracked

    @property
    def served(self) -> str:
        """The model to serve: the verified or combined one when the recipe made it, else ``best.pt``."""
        return self.finished.get("model", self.summary["best"])


class Callback:
    """Hooks around a run, on rank 0 only; each does nothing unless overridden. Once training is over, every
    hook's ``on_trained`` runs (tracking logs the results), then every ``on_end`` in order, which may add to the
    result (the recipe's step before tracking, which logs what it measured); ``on_exit`` always closes."""

    def on_start(self, trainer: Trainer, prepared: Prepared) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict) -> None: ...

    def on_trained(self, trainer: Trainer, result: TrainResult) -> None: ...

    def on_end(self, trainer: Trainer, result: TrainResult) -> None: ...

    def on_exit(self, error: BaseException | None) -> None: ...


class RecipeFinish(Callback):
    """After training a recipe: the retention check, the combined model and the verifier stage (``recipe.finish``).
    Whatever fails there, the trained model stays: a warning, and ``best.pt`` (or the combined model, when only the
    verifier stage failed) is what is served and registered."""

    def __init__(self, plan: Recipe, settings: Settings, warn=print) -> None:
        self.plan, self.settings, self.warn = plan, settings, warn

    def on_end(self, trainer: Trainer, result: TrainResult) -> None:
        from . import recipe as recipes

        best = Path(result.summary["best"])
        cfg = result.config
        try:
            if best.is_file():
                quick = cfg.max_steps is not None
                data = Path(cfg.data)
                result.finished = recipes.finish(self.plan, best, cfg.model, data, self.settings, quick, self.warn)
        except HebbianMirrorError as exc:
            self.warn(f"warning: after training: {exc}")
