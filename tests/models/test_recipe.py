"""``train --recipe``: a recipe file runs end to end on a tiny subset (rename, pseudo-labels from the base model,
merge, an extended head, training, the retention check), and the shipped weapons recipe reads."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from hebbian_mirror.classes import COCO_CLASSES
from hebbian_mirror.config import load_settings
from hebbian_mirror.datasets import Box, DetectionDataset, Sample, load_dataset, load_splits, write_splits
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.errors import DatasetError
from hebbian_mirror.experiments import resolve
from hebbian_mirror.images import decode_image
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.train import recipe as recipes

from ..conftest import COCO128, COCO_VAL, DOG, REPO, detector


def tiny_recipe(path, tiny, **changes) -> None:
    doc = {
        "name": "tiny",
        "root": "..",
        "datasets": [
            {"path": str(tiny), "rename": {"phone": "cell phone"}},
            {"path": str(COCO128), "splits": {"train2017": "train"}, "pseudo_labels": False},
        ],
        "pseudo_labels": {"conf": 0.5},
        "retention": str(COCO_VAL / "instances_val2017_subset.json"),
        "train": {"model": "yolov4-tiny", "keep_classes": True, "out": "runs/tiny", "epochs": 3, "batch": 4,
                  "img_size": 160, "workers": 0, "device": "cpu"},
        "augment": {"mosaic": 0.0},
        "alarm": {"classes": ["wallet"], "min_score": 0.6, "frames": 3},
        "combine": True,
        "verifier": {"classes": ["airpods"], "epochs": 3, "size": 64},
    }  # fmt: skip
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc | changes))


def small_retention(folder: Path) -> Path:
    """20 of the COCO retention images (where the run's numbers do not matter)."""
    coco = load_dataset(COCO_VAL / "instances_val2017_subset.json")
    coco.samples = coco.samples[:20]
    return write_splits({"val": coco}, folder / "retention-20", "yolo")


def found(model, image, labels: set[str]) -> set[tuple[str, float]]:
    detector = load_detector(model, load_settings(device="cpu"))
    options = DetectOptions(conf=0.001, classes=frozenset(i for i, c in enumerate(detector.class_names) if c in labels))
    return {(d.label, round(d.score, 4)) for d in detector.detect([image], [options])[0]}


def boxes_of(ds, name: str) -> int:
    return sum(1 for s in ds.samples for b in s.boxes if ds.classes[b.class_id] == name)


def test_a_recipe_runs_end_to_end_on_a_tiny_subset(cli, tiny, tmp_path, monkeypatch):
    path = tmp_path / "recipes" / "tiny.yaml"
    tiny_recipe(path, tiny)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, out, err = cli("train", "--recipe", path, "--epochs", "1", "--max-steps", "2", "--register", "hm-tiny")
    assert code == 0, out + err
    run = tmp_path / "runs" / "tiny" / "quick-look"  # relative to the recipe's root; a quick look: its own folder
    report = json.loads((run / "data-report.json").read_text())
    hand, coco = report["sources"]
    # the base model's people on the hand-held photos, though COCO (annotated, not pseudo-labelled) has people too;
    # never a class the new data teaches ("cell phone" on a wallet)
    assert hand["pseudo_boxes"] > 0 and hand["pseudo_classes"]["person"] > 0
    assert sum(hand["pseudo_classes"].values()) == hand["pseudo_boxes"]
    assert coco["pseudo_boxes"] == 0 and coco["train"] == recipes.QUICK_LOOK["train"]  # a sample of coco128's
    data = load_splits(run / "data" / "data.yaml")
    coco128, own = load_splits(COCO128)["train2017"], load_splits(tiny)
    coco128.samples = coco128.samples[:: 128 // recipes.QUICK_LOOK["train"]]  # spread over the set
    assert boxes_of(data["train"], "person") == boxes_of(coco128, "person") + hand["pseudo_classes"]["person"]
    assert boxes_of(data["train"], "cell phone") == boxes_of(coco128, "cell phone") + boxes_of(own["train"], "phone")
    val_labels = {data["val"].classes[b.class_id] for s in data["val"].samples for b in s.boxes}
    assert "cell phone" in data["train"].classes and "phone" not in data["train"].classes
    assert val_labels <= {"airpods", "cell phone", "wallet"}  # pseudo-labels never become validation truth
    best = checkpoint.read(run / "best.pt")
    assert list(best["class_names"]) == [*COCO_CLASSES, "airpods", "wallet"]  # phone trains COCO's cell phone row
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["config"]["epochs"] == 1  # the flag beat the recipe's 3
    assert summary["history"][0]["retention_AP50"] > 0.05  # the retention set, evaluated after each epoch too
    kept = json.loads((run / "retention.json").read_text())
    assert kept["base"] > 0.3 and 0 < kept["retention"] <= 1.2
    assert "base classes kept: COCO AP50" in out
    assert "--alarm wallet --alarm-min-score 0.6 --alarm-frames 3" in out  # the recipe's alarm defaults

    # combined with its base: served, registered and measured as the recipe's model
    combined = checkpoint.read(run / "combined.pt")
    assert combined["combined"]["taught"] == [COCO_CLASSES.index("cell phone")]  # the base class the data labels
    assert combined["combined"]["tuned"] == str(run / "best.pt") and combined["class_names"] == best["class_names"]
    assert kept["combined_model"] == str(run / "combined.pt") and 0 < kept["combined_retention"] <= 1.2
    assert abs(kept["combined_val"] - summary["history"][0]["AP50"]) < 0.05  # the new classes as trained
    assert 0 < kept["combined_val_merge_augment"] <= 1  # served with --merge --augment: measured, printed
    assert f"{kept['combined_val_merge_augment']:.3f} served with --merge --augment" in out.replace("\n", " ")
    image = decode_image(next((tiny.parent / "images" / "val").iterdir()))
    new = {"cell phone", "wallet", "airpods"}  # taught and new: scored by the trained model, as best.pt scores them
    combined_found, best_found = (found(run / name, image, new) for name in ("combined.pt", "best.pt"))
    assert combined_found == best_found and combined_found
    # and verified: the served model, registered and measured
    assert kept["model"] == kept["verified_model"] == str(run / "verified.pt")
    assert kept["verified_per_class"]["classes"] == ["airpods"] and 0 <= kept["verified_val"] <= 1
    verified = load_detector(run / "verified.pt", load_settings(device="cpu"))
    assert verified.verifier.classes == ("airpods",) and verified.verifier.size == 64
    assert f"verified → {run / 'verified.pt'}:" in out.replace("\n", "")
    assert "validation AP50 airpods" in " ".join(out.split())
    assert f"serve it: hebbian-mirror serve --model {run / 'verified.pt'}" in out.replace("\n", "")
    client = mlflow.MlflowClient()
    assert "hm-tiny: a --max-steps run is a quick look: not registered" in " ".join(out.split())
    assert client.search_registered_models(filter_string="name = 'hm-tiny'") == []  # a quick look: no champion
    experiment = client.get_experiment_by_name("tiny")  # the recipe's
    (tracked,) = client.search_runs([experiment.experiment_id])
    combined_model = next(m for m in client.search_logged_models([experiment.experiment_id]) if m.name == "combined")
    assert [a.path for a in client.list_logged_model_artifacts(combined_model.model_id)] == ["combined.pt"]
    verified_model = next(m for m in client.search_logged_models([experiment.experiment_id]) if m.name == "verified")
    assert [a.path for a in client.list_logged_model_artifacts(verified_model.model_id)] == ["verified.pt"]
    metrics = tracked.data.metrics
    assert metrics["final.combined_retention"] == pytest.approx(kept["combined_retention"])
    assert resolve(f"runs:/{tracked.info.run_id}/combined").name == "combined.pt"
    assert resolve(f"runs:/{tracked.info.run_id}/verified").name == "verified.pt"
    assert resolve(f"runs:/{tracked.info.run_id}/model").name == "best.pt"

    # the same run with other data is refused, not trained on the old data; a bad retention set fails up front
    tiny_recipe(path, tiny, pseudo_labels={"conf": 0.9})
    code, out, err = cli("train", "--recipe", path, "--resume", "--max-steps", "1", "--no-track")
    assert code != 0 and "prepared from another recipe" in out + err, out + err
    tiny_recipe(path, tiny, pseudo_labels={"conf": 0.9}, retention=str(small_retention(tmp_path)))  # not data
    elsewhere = tmp_path / "elsewhere"  # --out: another run folder, its own data
    code, out, err = cli(
        "train", "--recipe", path, "--out", elsewhere, "--epochs", "1", "--max-steps", "1", "--no-track"
    )
    assert code == 0, out + err
    assert json.loads((elsewhere / "data-report.json").read_text())["pseudo_conf"] == 0.9
    assert (elsewhere / "best.pt").is_file() and (elsewhere / "data" / "data.yaml").is_file()
    assert "warning" not in out and (elsewhere / "combined.pt").is_file()  # combined from its own data's report
    assert f"serve it: hebbian-mirror serve --model {elsewhere / 'verified.pt'}" in out.replace("\n", "")
    assert json.loads((run / "data-report.json").read_text()) == report  # the first run's data untouched
    alone = tmp_path / "alone.json"
    alone.write_text((COCO_VAL / "instances_val2017_subset.json").read_text())
    tiny_recipe(path, tiny, retention=str(alone), train={"out": "runs/other", "epochs": 1})
    code, out, err = cli("train", "--recipe", path, "--no-track")  # combine, but the head is replaced
    assert code != 0 and "'combine' extends its base model: it needs keep_classes: true" in out + err, out + err
    tiny_recipe(path, tiny, retention=str(alone), train={"out": "runs/other", "epochs": 1, "keep_classes": True})
    code, out, err = cli("train", "--recipe", path, "--no-track")
    assert code != 0 and "none of its 82 images is there" in out + err, out + err
    assert not (tmp_path / "runs" / "other").exists()


def test_a_failure_after_training_keeps_the_trained_model(cli, tiny, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise DatasetError("the retention set went away")

    monkeypatch.setattr(recipes, "finish", fail)
    path = tmp_path / "recipes" / "tiny.yaml"
    tiny_recipe(path, tiny, retention=None)  # finish fails before any retention check
    code, out, err = cli("train", "--recipe", path, "--epochs", "1", "--max-steps", "1", "--no-track")
    assert code == 0, out + err
    assert "warning: after training: the retention set went away" in out
    best = tmp_path / "runs" / "tiny" / "quick-look" / "best.pt"
    assert best.is_file() and f"serve it: hebbian-mirror serve --model {best}" in out.replace("\n", "")


def test_pseudo_labels_leave_annotated_objects_alone():
    """The base model's boxes join an image's labels, but never one on an object already annotated (under
    another name: a labelled pistol the base model calls a remote), nor of a class the new data teaches."""
    base = detector("yolov4-tiny")
    image = decode_image(DOG)
    dets = base.detect([image], [DetectOptions(conf=0.5)])[0]
    (dog,) = [d.box for d in dets if d.label == "dog"]
    (truck,) = [d.box for d in dets if d.label == "truck"]
    assert any(d.label == "bicycle" for d in dets)
    x1, y1, x2, y2 = dog
    shifted = (x1 + 0.1 * (x2 - x1), y1, x2 + 0.1 * (x2 - x1), y2)  # IoU about 0.8 with the base model's dog
    h, w = image.shape[:2]
    labelled = [Box(shifted, 0), Box(truck, 0)]  # on the truck too: a taught class is skipped, not counted
    ds = DetectionDataset(["pistol"], [Sample(DOG, w, h, labelled)], "constructed")
    out, added, on_labels = recipes.pseudo_label(ds, base, skip={"truck"}, conf=0.5)
    others = [d for d in dets if d.label not in ("dog", "truck")]
    boxes = out.samples[0].boxes
    assert sorted(out.classes[b.class_id] for b in boxes) == sorted(["pistol", "pistol", *(d.label for d in others)])
    assert (added, on_labels) == (len(others), 1)
    _, added_all, none_left = recipes.pseudo_label(ds, base, skip=set(), conf=0.5, overlap=1.0)
    assert (added_all, none_left) == (len(dets), 0)


def test_the_weapons_recipe_reads():
    plan = recipes.read(REPO / "recipes" / "weapons.yaml")
    assert [s.path.name for s in plan.sources] == ["pistols", "knives", "handheld", "coco128"]
    assert all(s.path.is_dir() for s in plan.sources)
    assert plan.train["keep_classes"] and plan.retention.is_file() and plan.register == "weapons" and plan.combine
    assert plan.out == REPO / "runs" / "weapons"
    assert plan.verifier == {"classes": ["pistol", "knife"], "epochs": 5}


def test_a_failing_verifier_stage_warns_and_keeps_what_was_made_before_it(monkeypatch, tmp_path):
    from hebbian_mirror.errors import TrainingConfigError
    from hebbian_mirror.train import verifier

    def fail(*args, **kwargs):
        raise TrainingConfigError("the training split gives the verifier no crop of knife")

    monkeypatch.setattr(verifier, "run", fail)
    plan = recipes.Recipe("x", [], {"out": str(tmp_path)}, verifier={"classes": ["knife"]})
    warned: list[str] = []
    result = recipes.finish(plan, tmp_path / "best.pt", "yolov4-tiny", tmp_path, load_settings(), warn=warned.append)
    assert warned == ["warning: the verifier stage: the training split gives the verifier no crop of knife"]
    assert "verified_model" not in result and "model" not in result  # best.pt (or the combined model) served
