"""The command line as a user runs it: models, predict, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from .conftest import COCO_VAL, DOG, KNIFE, REPO


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


def test_models_table_and_json(cli):
    code, stdout, _ = cli("models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in map(json.loads, stdout.splitlines())}
    assert rows["yolov4-tiny"]["cached"] and rows["yolov4-tiny"]["default"]
    assert not rows["yolov3"]["cached"]  # not in ../shared
    assert rows["ssd300-vgg16"]["AP"] == 25.1
    code, stdout, _ = cli("models")
    assert code == 0 and "yolo-fastest-1.1" in stdout


def test_console_script_and_module_entry_points():
    for cmd in (
        [str(REPO / ".venv" / "bin" / "hebbian-mirror"), "--version"],
        [sys.executable, "-m", "hebbian_mirror", "--version"],
    ):
        if cmd[0].endswith("hebbian-mirror") and not (REPO / ".venv" / "bin" / "hebbian-mirror").exists():
            cmd = [sys.executable, "-m", "hebbian_mirror", "--version"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "hebbian-mirror" in result.stdout


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


def test_every_option_has_help_in_one_style():
    """Every command, argument and option says what it is; no stray space before a full stop; defaults only
    as the help's own "[default: ...]" (never written into the text), and none that does not exist."""
    import re

    import typer

    from hebbian_mirror.cli import app

    def walk(command, path: str):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    checked = 0
    for path, command in walk(typer.main.get_command(app), "hebbian-mirror"):
        assert (command.help or "").strip(), f"{path}: no help"
        for param in command.params:
            where = f"{path} {param.name}"
            text = (param.help or "").strip()
            assert text, f"{where}: no help"
            shown = param.show_default if isinstance(param.show_default, str) else ""
            for words in (text, shown, command.help):
                assert not re.search(r"\s[.,;](\s|$)", words), f"{where}: space before punctuation in {words!r}"
            assert not re.search(r"\(default\b|[;,] default\b|\bdefaults? to\b", text), f"{where}: {text!r}"
            if isinstance(param.default, Path):
                assert param.default.exists() or "~" in str(param.default), f"{where}: {param.default} is missing"
            checked += 1
    assert checked > 100
    bench = typer.main.get_command(app).commands["bench"]
    assert next(p for p in bench.params if p.name == "image").required


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


def test_every_command_prints_its_help(cli):
    """Rich renders every help text (a stray [tag] in one would crash --help)."""
    from hebbian_mirror.cli import app

    commands = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    groups = [(g.name, [c.name for c in g.typer_instance.registered_commands]) for g in app.registered_groups]
    calls = [[c] for c in commands] + [[g, c] for g, subs in groups for c in subs]
    assert ["watch"] in calls and ["evaluate-alarms"] in calls and ["data", "alarm-clips"] in calls
    for call in calls:
        code, out, err = cli(*call, "--help")
        assert code == 0 and "Usage" in out, (call, out, err)
