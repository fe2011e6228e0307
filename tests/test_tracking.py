"""MLflow with a real local store: a tracked training run, the registry's champion alias, and registered
models served by URI."""

from __future__ import annotations

import os
import shutil

import httpx
import mlflow
import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.tracking import CHAMPION, METRIC, MODEL_ARTIFACT, TrainingRun

from .server_process import ServerProcess


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
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("hm-test").experiment_id])
    assert run.data.params["epochs"] == "2" and run.data.params["augment.hflip"] == "0.5"
    assert METRIC in run.data.metrics and "AP50" in run.data.metrics and "loss" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "AP")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "evaluation", "predictions", "summary.json", "dataset_stats.json"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/pr_curve.png", "evaluation/confusion_matrix.png", "evaluation/report.json"} <= evaluation
    champion = client.get_model_version_by_alias("hm-weapons", CHAMPION)
    assert int(champion.version) == 1

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

    srv = ServerProcess("--model", "models:/hm-weapons@champion", log=tmp_path / "server.log")
    try:
        models = httpx.get(srv.url + "/v1/models").json()["models"]
        assert models[0]["classes"] == ["airpods", "phone", "wallet"]
        image = next((tiny.parent / "images" / "val").iterdir())
        r = httpx.post(srv.url + "/v1/detect", params={"conf": 0.0001}, content=image.read_bytes(), timeout=60)
        assert r.status_code == 200 and r.json()["detections"]
    finally:
        assert srv.stop(), srv.log()


def test_champion_moves_only_to_a_better_model(tmp_path, store, tiny):
    """Three runs registered in turn with validation AP 0.5, 0.3, 0.7: the champion goes v1, v1, v3."""
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
            workers=0,
            max_steps=1,
            eval_batch=4,
        ),
        load_settings(device="cpu"),
    )
    shutil.copy(tmp_path / "t" / "best.pt", checkpoint)
    outcomes = []
    for ap in (0.5, 0.3, 0.7):
        with TrainingRun("champions") as run:
            run.mlflow.log_metric(METRIC, ap)
            run.mlflow.log_artifact(str(checkpoint), MODEL_ARTIFACT)
            outcomes.append(run.register("hm-champ"))
    assert [o["promoted"] for o in outcomes] == [True, False, True]
    assert [o["version"] for o in outcomes] == [1, 2, 3]
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias("hm-champ", CHAMPION).version) == 3
    assert os.path.isfile(tmp_path / "mlflow.db")
