"""The command line as a user runs it: models, predict, errors."""

from __future__ import annotations

import json

from PIL import Image

from ..conftest import COCO_VAL, DOG, KNIFE


def test_predict_dog_table_and_annotated_copy(cli, tmp_path):
    out = tmp_path / "annotated"
    code, stdout, stderr = cli("predict", DOG, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    for label in ("dog", "bicycle", "truck"):
        assert label in stdout
    annotated = Image.open(out / "dog.jpg")
    assert annotated.size == (768, 576)


def test_predict_json_lines_with_filters(cli):
    code, stdout, stderr = cli("predict", DOG, KNIFE, "--json", "--classes", "dog,person", "--conf", "0.3")
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [r["image"] for r in lines] == [str(DOG), str(KNIFE)]
    dog, knife = lines
    assert {d["label"] for d in dog["detections"]} == {"dog"}
    assert any(d["label"] == "person" for d in knife["detections"])
    for d in dog["detections"]:
        assert set(d) == {"box", "score", "class_id", "label"} and d["score"] >= 0.3 and len(d["box"]) == 4


def test_predict_bad_inputs_are_clear(cli, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, stdout, stderr = cli("predict", bad, DOG, "--json")
    assert code == 1  # one image failed, the other was still processed
    assert "bad.jpg" in stderr and "could not be decoded" in stderr
    assert '"dog"' in stdout
    code, _, stderr = cli("predict", DOG, "--classes", "unicorn")
    assert code == 1 and "unknown class 'unicorn'" in stderr
    code, _, stderr = cli("predict", DOG, "--conf", "1.5")
    assert code == 1 and "conf" in stderr
    code, _, stderr = cli("predict", DOG, "--model", "no-such-model")
    assert code == 1 and "unknown model 'no-such-model'" in stderr


def test_predict_missing_weights_offline(cli, tmp_path):
    code, _, stderr = cli("predict", DOG, "--weights-dir", tmp_path / "empty", "--offline")
    assert code == 1
    flat = " ".join(stderr.split())
    assert "yolov4-tiny.weights" in flat and "releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights" in flat
    assert "Traceback" not in stderr


def test_output_at_80_columns_keeps_names_paths_and_commands_whole(cli, tmp_path, monkeypatch):
    """Copy-paste from a pipe or a narrow terminal: model names, paths and commands on one line, never cut."""
    from hebbian_mirror.models.registry import registry

    code, stdout, stderr = cli("models")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert "…" not in stdout and all(len(line) <= 80 for line in lines if "weights cache" not in line)
    for spec in registry().values():
        (row,) = [line for line in lines if line.split() and line.split()[0] == spec.name]
        ap = spec.published.get("AP")
        assert (f"{ap:.1f}" if ap is not None else "—") in row.split(), row  # numbers whole too
    assert any(line.split()[:2] == ["yolov4-tiny", "*"] for line in lines if line.strip())
    assert "(default)" not in stdout

    deep = tmp_path / ("a-folder-name-long-enough-to-push-every-path-past-eighty-columns" + "-x" * 10) / "photos"
    deep.mkdir(parents=True)
    image = deep / "the-dog-photo-with-a-long-name.jpg"
    image.write_bytes(DOG.read_bytes())
    out = deep / "annotated"
    code, stdout, stderr = cli("predict", image, "--out", out)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(str(out / image.name)) > 100
    assert f"annotated → {out / image.name}" in lines
    assert any(line.startswith(f"{image}  (768×576,") for line in lines)


def test_settings_still_beat_the_defaults_shown_in_help(cli, tmp_path, monkeypatch):
    """Options show their built-in default, but only a value typed on the command line overrides the
    environment and the TOML file."""
    rows = lambda out: [json.loads(line) for line in out.splitlines() if line.startswith("{")]  # noqa: E731
    code, stdout, stderr = cli("models", "--json")  # HEBBIAN_MIRROR_WEIGHTS (conftest), not ~/.cache/...
    assert code == 0 and {r["name"]: r["cached"] for r in rows(stdout)}["yolov4-tiny"], stderr
    monkeypatch.setenv("HEBBIAN_MIRROR_MODEL", "yolov3-tiny")
    toml = tmp_path / "hm.toml"
    toml.write_text("conf = 0.9\n")  # above every score on the dog photo
    code, stdout, stderr = cli("predict", DOG, "--json", "--config", toml)
    (row,) = rows(stdout)
    assert code == 0 and row["model"] == "yolov3-tiny" and row["detections"] == [], stderr
    code, stdout, stderr = cli("predict", DOG, "--json", "--config", toml, "--conf", "0.5", "--model", "yolov4-tiny")
    (row,) = rows(stdout)
    assert row["model"] == "yolov4-tiny" and {d["label"] for d in row["detections"]} == {"dog", "truck", "bicycle"}


def test_fraction_options_are_refused_by_name(cli):
    """Before anything is loaded, with the option's name, not a settings dump."""
    annotations = COCO_VAL / "instances_val2017_subset.json"
    for args, message in (
        (("predict", DOG, "--conf", "1.5"), "--conf must be between 0 and 1, got 1.5"),
        (("predict", DOG, "--iou", "-0.2"), "--iou must be between 0 and 1, got -0.2"),
        (("evaluate", "--data", annotations, "--iou", "2"), "--iou must be between 0 and 1, got 2"),
        (("evaluate", "--data", annotations, "--conf", "-1"), "--conf must be between 0 and 1, got -1"),
    ):
        code, stdout, stderr = cli(*args)
        assert code == 1 and message in stderr and "invalid settings" not in stderr, (args, stderr)
        assert "Traceback" not in stderr and not stdout.strip()


def test_models_table_and_json(cli):
    code, stdout, _ = cli("models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in map(json.loads, stdout.splitlines())}
    assert rows["yolov4-tiny"]["cached"] and rows["yolov4-tiny"]["default"]
    assert not rows["yolov3"]["cached"]  # not in ../shared
    assert rows["ssd300-vgg16"]["AP"] == 25.1
    code, stdout, _ = cli("models")
    assert code == 0 and "yolo-fastest-1.1" in stdout
