"""The Trainer: what ``hebbian-mirror train`` does, as a Python API. It owns a run's plan (a dataset, or a recipe
whose data it prepares once), the relaunch in N processes (``--nproc``: torchrun runs the command again in each),
the ranks (only rank 0 reports), and the callbacks around the run: the recipe's after-training step and MLflow
tracking are two of them. The command line parses its options and calls :meth:`Trainer.fit`."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import TrainingConfigError
from .callbacks import Callback, RecipeFinish, TrainResult
from .run_config import TrainConfig

if TYPE_CHECKING:
    from ..datasets.augment import AugmentConfig
    from .recipe import Recipe


class Trainer:
    """One training run. ``data`` or ``recipe`` (a recipe names its datasets); ``options``: :class:`TrainConfig`
    fields (over the recipe's ``train`` section); ``augmentation``: the augmentation (default: the recipe's or the
    standard one); ``nproc``: processes on this machine; ``track``: an MLflow run (``experiment``, default the
    recipe's name or the dataset's folder; ``register``: the registered model's name)."""

    def __init__(
        self,
        settings: Settings,
        *,
        data: str | Path | None = None,
        recipe: str | Path | None = None,
        options: dict[str, Any] | None = None,
        augmentation: AugmentConfig | None = None,
        resume: bool = False,
        nproc: int = 1,
        track: bool = True,
        experiment: str | None = None,
        register: str | None = None,
        callbacks: list[Callback] | None = None,
        warn=print,
    ) -> None:
        if recipe is not None and data is not None:
            raise TrainingConfigError("give --data or --recipe, not both: the recipe names its datasets")
        if recipe is None and data is None:
            raise TrainingConfigError("give --data DATASET or --recipe FILE")
        if register and not track:
            raise TrainingConfigError("--register needs tracking (drop --no-track)")
        if nproc < 1:
            raise TrainingConfigError(f"nproc must be at least 1, got {nproc}")
        self.settings, self.data, self.recipe = settings, data, recipe
        self.options, self.augmentation = dict(options or {}), augmentation
        self.resume, self.nproc = resume, nproc
        self.track, self.experiment, self.register = track, experiment, register
        self.callbacks = list(callbacks or [])
        self.warn = warn
        self.plan: Recipe | None = None
        self.config: TrainConfig | None = None
        self.exit_code: int | None = None  # set when this process only launched the others

    def configure(self) -> TrainConfig:
        """The run's config, checked; a recipe's data prepared (once, before any process of an N-process run)."""
        if self.config is not None:
            return self.config
        from ..datasets.augment import AugmentConfig

        given = dict(self.options)
        if self.recipe is not None:
            from . import recipe as recipes

            plan = recipes.read(Path(self.recipe))
            # a quick look (--max-steps, here or in the recipe): every stage on a sample, in its own folder
            quick = given.get("max_steps", plan.train.get("max_steps")) is not None
            if "out" in given:  # the run folder given here holds the prepared data too, not the recipe's
                given["out"] = str(given["out"])
                plan = replace(plan, train=plan.train | {"out": given["out"]})
            elif quick:
                plan = replace(plan, train=plan.train | {"out": str(plan.out / "quick-look")})
            if (plan.register or self.register) and not self.track:
                raise TrainingConfigError("--register needs tracking (drop --no-track)")
            extra = {"augmentation": self.augmentation} if self.augmentation else {}
            recipes.config(plan, plan.out / "data", given | extra)  # its values checked before any slow work
            base = given.get("model", plan.train.get("model", TrainConfig.model))
            keep = given.get("keep_classes", plan.train.get("keep_classes", TrainConfig.keep_classes))
            recipes.check_combinable(plan, base, keep, self.settings)
            data_path, _ = recipes.prepare_data(plan, self.settings, base, sample=quick)
            self.config = recipes.config(plan, data_path, given | extra)
            self.plan = plan
            self.register = self.register or plan.register
            self.experiment = self.experiment or plan.name  # not its prepared data's folder name ("data")
            self.callbacks.insert(0, RecipeFinish(plan, self.settings, self.warn))
        else:
            values = given | {"data": str(self.data), "augmentation": self.augmentation or AugmentConfig()}
            if "out" in values:
                values["out"] = str(values["out"])
            self.config = TrainConfig(**values)
        return self.config

    def fit(self, argv: list[str] | None = None) -> TrainResult | None:
        """Run it. With ``nproc`` > 1 this process starts the others (torchrun runs ``hebbian-mirror`` with
        ``argv`` in each; its exit code in :attr:`exit_code`) and returns ``None``; so do the processes other
        than rank 0, which only train. Rank 0 returns the result."""
        cfg = self.configure()
        if self.nproc > 1 and "LOCAL_RANK" not in os.environ:
            from .distributed import check_launch, launch

            if argv is None:
                raise TrainingConfigError("several processes relaunch the command: run `hebbian-mirror train --nproc`")
            check_launch(self.nproc, cfg)
            self.exit_code = launch(self.nproc, argv)
            return None
        from .loop import prepare, train

        if int(os.environ.get("RANK", "0")) != 0:  # another process of an N-process run: rank 0 reports
            train(cfg, self.settings, resume=self.resume)
            return None
        prepared = prepare(cfg, self.settings, self.resume)  # a run that cannot start leaves nothing behind
        hooks = list(self.callbacks)
        if self.track:
            from .experiment import MlflowTracking

            hooks.append(MlflowTracking(self.experiment, self.register))
        started: list[Callback] = []
        try:
            for hook in hooks:
                hook.on_start(self, prepared)
                started.append(hook)

            def on_epoch(epoch: int, metrics: dict) -> None:
                for hook in hooks:
                    hook.on_epoch(epoch, metrics)

            summary = train(cfg, self.settings, resume=self.resume, on_epoch=on_epoch, prepared=prepared)
            result = TrainResult(cfg, summary)
            for hook in hooks:
                hook.on_trained(self, result)
            for hook in hooks:
                hook.on_end(self, result)
        except BaseException as exc:
            for hook in reversed(started):
                hook.on_exit(exc)
            raise
        for hook in reversed(started):
            hook.on_exit(None)
        return result
