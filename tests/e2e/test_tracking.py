"""MLflow with a real local store: a tracked training run, the registry's champion alias, and registered
models served by URI."""

from __future__ import annotations

import json
import os
import re
import shutil

import httpx
import mlflow
import pytest
from mlflow.entities import LoggedModelStatus

from hebbian_mirror.config import default_model_name as model_name
from hebbian_mirror.config import load_settings
from hebbian_mirror.experiments import CHAMPION, EXPERIMENT_KIND, METRIC, MODEL_ARTIFACT, TrainingRun
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.train.experiment import dataset_name

from ..conftest import SHARED
from ..server_process import ServerProcess


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts land in ./mlruns
    return uri


def test_tracked_training_run_and_served_champion(cli, tiny, tmp_path, store):
    out = tmp_path / "run"
    code, stdout, stderr = cli(
        "train",
        "--data",
        tiny,
        "--epochs",
        "2",
        "--batch",
        "4",
        "--img-size",
        "160",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        out,
        "--experiment",
        "hm-test",
        "--register",
        "hm-weapons",
    )
    assert code == 0, stderr
    assert "now the champion" in stdout
    lines = stdout.splitlines()  # at 80 columns, every command whole on its line (copy-paste)
    assert f"serve it: hebbian-mirror serve --model {out / 'best.pt'}" in lines
    assert "serve it: hebbian-mirror serve --model models:/hm-weapons@champion" in lines
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("hm-test")
    assert experiment.tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1]  # the UI's machine-learning view
    (run,) = client.search_runs([experiment.experiment_id])
    assert re.fullmatch(r"yolov4-tiny-data-\d{8}-\d{6}", run.info.run_name), run.info.run_name
    assert run.data.tags["out"] == str(out) and run.data.tags["base_model"] == "yolov4-tiny"
    page = f"#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert any(line.startswith("see it: mlflow ui --backend-store-uri") and line.endswith(page) for line in lines)
    assert run.data.params["epochs"] == "2" and run.data.params["augmentation.hflip"] == "0.5"
    assert METRIC in run.data.metrics and "AP50" in run.data.metrics and "loss" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "AP")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation", "predictions", "summary.json", "dataset_stats.json"} <= artifacts
    (logged,) = client.search_logged_models([experiment.experiment_id])  # the UI's "Logged models"
    assert logged.name == MODEL_ARTIFACT and logged.source_run_id == run.info.run_id
    assert logged.status == LoggedModelStatus.READY
    assert [a.path for a in client.list_logged_model_artifacts(logged.model_id)] == ["best.pt"]
    assert {m.key: m.value for m in logged.metrics}[METRIC] == run.data.metrics[METRIC]
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/pr_curve.png", "evaluation/confusion_matrix.png", "evaluation/report.json"} <= evaluation
    champion = client.get_model_version_by_alias("hm-weapons", CHAMPION)
    assert int(champion.version) == 1 and champion.source == f"models:/{logged.model_id}"
    linked = json.loads(client.get_logged_model(logged.model_id).tags["mlflow.modelVersions"])
    assert linked == [{"name": "hm-weapons", "version": 1}]  # the UI shows the model's registered version

    detector = load_detector("models:/hm-weapons@champion", load_settings(device="cpu"))
    assert detector.class_names == ["airpods", "phone", "wallet"]
    code, stdout, stderr = cli(
        "predict",
        tiny.parent / "images" / "val",
        "--model",
        f"runs:/{run.info.run_id}/model",
        "--conf",
        "0.0001",
        "--json",
    )
    assert code == 0 and stdout.count('"detections"') == 4, stderr

    srv = ServerProcess("--model", "models:/hm-weapons@champion", "--workers", "1", log=tmp_path / "server.log")
    try:
        models = httpx.get(srv.url + "/v1/models").json()["models"]
        assert models[0]["classes"] == ["airpods", "phone", "wallet"]
        image = next((tiny.parent / "images" / "val").iterdir())
        r = httpx.post(srv.url + "/v1/detect", params={"conf": 0.0001}, content=image.read_bytes(), timeout=60)
        assert r.status_code == 200 and r.json()["detections"]
    finally:
        assert srv.stop(), srv.log()


def test_champion_moves_only_to_a_better_model_on_the_same_validation_data(cli, tmp_path, store, tiny):
    """Runs registered in turn: AP 0.4 with no fingerprint (as before fingerprints), 0.5, 0.3, 0.7 on one
    validation set, then 0.9 on another: the champion goes v1, v2, v2, v4, v4; a --max-steps run is never
    registered."""
    checkpoint = tmp_path / "best.pt"
    from hebbian_mirror.train.loop import TrainConfig, train

    train(
        TrainConfig(
            data=str(tiny),
            out=str(tmp_path / "t"),
            epochs=1,
            batch=4,
            img_size=160,
            device="cpu",
            loader_workers=0,
            max_steps=1,
            eval_batch=4,
        ),
        load_settings(device="cpu"),
    )
    shutil.copy(tmp_path / "t" / "best.pt", checkpoint)
    outcomes = []
    for ap, data in ((0.4, None), (0.5, "val-a"), (0.3, "val-a"), (0.7, "val-a"), (0.9, "val-b")):
        with TrainingRun("champions") as run:
            run.mlflow.log_metric(METRIC, ap)
            run.log_model(checkpoint)
            outcomes.append(run.register("hm-champ", data))
    assert [o["promoted"] for o in outcomes] == [True, True, False, True, False]  # v1: from before fingerprints
    assert [o["version"] for o in outcomes] == [1, 2, 3, 4, 5]
    assert "other validation data" in outcomes[4]["why"] and outcomes[4]["champion_AP"] == 0.7
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("hm-champ", CHAMPION).version) == 4
    code, stdout, stderr = cli(
        "train", "--data", tiny, "--epochs", "1", "--max-steps", "1", "--batch", "4", "--img-size", "160",
        "--workers", "0", "--device", "cpu", "--out", tmp_path / "quick", "--register", "hm-quick",
    )  # fmt: skip
    assert code == 0 and "quick look: not registered" in " ".join(stdout.split()), stdout + stderr
    assert client.search_registered_models(filter_string="name = 'hm-quick'") == []
    assert os.path.isfile(tmp_path / "mlflow.db")


def test_a_run_that_cannot_start_leaves_nothing_in_mlflow(cli, tiny, tmp_path, store):
    """Missing weights, an unknown model or a dataset without a val split stop `train` before MLflow has an
    experiment or a run (and before the output folder exists)."""
    no_val = tmp_path / "no-val"
    (no_val / "images" / "train").mkdir(parents=True)
    (no_val / "data.yaml").write_text("names: [a]\ntrain: images/train\n")
    for args, message in (
        (("--data", tiny, "--weights-dir", tmp_path / "no-weights", "--offline"), "not in the weights cache"),
        (("--data", tiny, "--model", "yolov9"), "unknown base model"),
        (("--data", no_val), "has no 'val' split"),
    ):
        code, _, stderr = cli(
            "train", *args, "--out", tmp_path / "never", "--experiment", "hm-never", "--device", "cpu"
        )
        assert code == 1 and message in " ".join(stderr.split()), stderr
    assert not (tmp_path / "never").exists()
    client = mlflow.MlflowClient(tracking_uri=store)  # this test's store (nothing here called mlflow)
    assert client.get_experiment_by_name("hm-never") is None
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []


def test_run_and_experiment_names():
    assert dataset_name(SHARED / "data" / "weapons" / "handheld" / "data.yaml") == "handheld"
    assert dataset_name(SHARED / "data" / "coco128") == "coco128"
    assert model_name("yolov4-tiny") == "yolov4-tiny"
    assert model_name("runs/weapons/best.pt") == "weapons" and model_name("my-detector.pt") == "my-detector"
    assert model_name("models:/hm-weapons@champion") == "hm-weapons" and model_name("models:/hm/3") == "hm"
    assert model_name("runs:/0123456789abcdef/model") == "run-01234567"
