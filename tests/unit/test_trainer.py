"""The Trainer's plan is checked before anything exists: a bad combination of options or a bad value stops it
with the product's error, no run folder and no MLflow run left behind."""

from __future__ import annotations

import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.errors import TrainingConfigError
from hebbian_mirror.train.run_config import TrainConfig
from hebbian_mirror.train.trainer import Trainer


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "give --data DATASET or --recipe FILE"),
        ({"data": "d", "recipe": "r.yaml"}, "not both"),
        ({"data": "d", "register": "weapons", "track": False}, "--register needs tracking"),
        ({"data": "d", "nproc": 0}, "nproc must be at least 1"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_at_once(kwargs, words):
    with pytest.raises(TrainingConfigError, match=words):
        Trainer(load_settings(), **kwargs)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"optimizer": "adam"}, "unknown optimizer 'adam': sgd or adamw"),
        ({"schedule": "linear"}, "unknown schedule 'linear': cosine or step"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"backbone_lr": 2.0}, "backbone_lr must be between 0 and 1"),
    ],
)
def test_bad_values_stop_before_a_folder_or_a_run_exists(tmp_path, monkeypatch, options, words):
    monkeypatch.chdir(tmp_path)
    trainer = Trainer(load_settings(), data=tmp_path / "data", options=options | {"out": tmp_path / "run"})
    with pytest.raises(TrainingConfigError, match=words):
        trainer.fit()
    assert list(tmp_path.iterdir()) == []  # no run folder, no mlflow.db, no mlruns
    with pytest.raises(TrainingConfigError, match=words):
        TrainConfig(data="d", **options)
