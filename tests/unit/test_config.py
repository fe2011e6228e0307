"""Settings precedence: defaults < TOML < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from hebbian_mirror.config import load_settings
from hebbian_mirror.errors import ConfigError


def test_layers_in_order(tmp_path):
    toml = tmp_path / "hm.toml"
    toml.write_text('model = "yolov3-tiny"\nconf = 0.5\niou = 0.6\nmax_det = 7\n')
    env = {"HEBBIAN_MIRROR_CONF": "0.4", "HEBBIAN_MIRROR_IOU": "0.3", "HEBBIAN_MIRROR_WEIGHTS": str(tmp_path)}
    s = load_settings(toml, environ=env, iou=0.2)
    assert s.model == "yolov3-tiny"  # TOML over default
    assert s.max_det == 7
    assert s.conf == 0.4  # env over TOML
    assert s.iou == 0.2  # flag over env
    assert s.weights_dir == tmp_path
    assert load_settings(environ={}).model == "yolov4-tiny"
    assert load_settings(environ={}).weights_dir == Path("~/.cache/hebbian-mirror/weights").expanduser()


def test_config_file_from_env_and_table(tmp_path):
    toml = tmp_path / "hm.toml"
    toml.write_text('[hebbian_mirror]\ndevice = "cpu"\n')
    assert load_settings(environ={"HEBBIAN_MIRROR_CONFIG": str(toml)}).device == "cpu"


@pytest.mark.parametrize(
    ("content", "env", "words"),
    [
        ("conf = 2.0\n", {}, "conf \\(config file"),
        ("", {"HEBBIAN_MIRROR_MAX_DET": "many"}, "max_det \\(environment\\)"),
        ("colour = 'red'\n", {}, "colour"),
        ("conf = [\n", {}, "not valid TOML"),
    ],
)
def test_bad_values_name_field_and_source(tmp_path, content, env, words):
    toml = tmp_path / "hm.toml"
    toml.write_text(content)
    with pytest.raises(ConfigError, match=words):
        load_settings(toml, environ=env)


def test_safe_defaults():
    """Nothing is exposed beyond this machine unless asked for; every limit is on."""
    s = load_settings(environ={})
    assert s.host == "127.0.0.1" and s.api_key is None
    assert s.header_timeout <= 10 and s.body_timeout <= 30 and s.decode_timeout <= 10
    assert s.pixel_budget == 4 * s.max_pixels and s.max_connections and s.max_requests


@pytest.mark.parametrize(
    ("entry", "name", "source"),
    [
        ("yolov4-tiny", "yolov4-tiny", "yolov4-tiny"),
        ("pistols=runs/tiny/best.pt", "pistols", "runs/tiny/best.pt"),
        ("runs/tiny/best.pt", "tiny", "runs/tiny/best.pt"),  # a generic file name: its folder's
        ("/srv/models/weapons4-yolov4-tiny.pt", "weapons4-yolov4-tiny", "/srv/models/weapons4-yolov4-tiny.pt"),
        ("models:/tinypistol@champion", "tinypistol", "models:/tinypistol@champion"),
        ("models:/tinypistol/3", "tinypistol", "models:/tinypistol/3"),
        ("runs:/0123456789abcdef/model", "run-01234567", "runs:/0123456789abcdef/model"),
        ("my model.onnx", "my-model", "my model.onnx"),
        ("nets/x.cfg,nets/x.weights", "x", "nets/x.cfg,nets/x.weights"),
    ],
)
def test_served_models_are_named_by_the_user_or_after_their_source(entry, name, source):
    (served,) = load_settings(models=[entry]).served_models
    assert (served.name, served.source) == (name, source)


def test_two_models_with_one_name_are_refused():
    with pytest.raises(ConfigError, match=r"two models would be called tiny: name them.*NAME=SOURCE"):
        load_settings(models=["runs/tiny/best.pt", "runs/tiny/last.pt"]).served_models  # noqa: B018
    names = [m.name for m in load_settings(models=["a=runs/tiny/best.pt", "runs/tiny/last.pt"]).served_models]
    assert names == ["a", "tiny"]


def test_settings_are_their_components_and_a_part_is_validated_alone():
    from hebbian_mirror.config import COMPONENTS, DetectSettings, LimitSettings, ModelSettings, Settings
    from hebbian_mirror.serving.worker_main import WorkerSpec
    from hebbian_mirror.serving.workers import worker_specs

    fields = [name for component in COMPONENTS for name in component.model_fields]
    assert sorted(fields) == sorted(Settings.model_fields) and len(fields) == len(set(fields))  # each in one
    settings = load_settings(conf=0.3, max_pixels=1000, device="cpu", workers=2)
    detect = settings.part(DetectSettings)
    assert (
        type(detect) is DetectSettings
        and detect.conf == 0.3
        and set(detect.model_fields)
        == {
            "conf",
            "iou",
            "max_det",
            "merge",
            "augment",
        }
    )
    with pytest.raises(ValueError):
        DetectSettings(conf=2)  # a component validates on its own
    specs, _ = worker_specs("m", "yolov4-tiny", settings)
    assert len(specs) == 2 and all(isinstance(s, WorkerSpec) for s in specs)
    assert type(specs[0].loading) is ModelSettings and type(specs[0].limits) is LimitSettings
    assert specs[0].limits.max_pixels == 1000 and specs[0].detect.conf == 0.3  # a worker gets its parts only


def test_a_config_file_takes_each_component_as_its_own_table(tmp_path):
    from hebbian_mirror.errors import ConfigError

    path = tmp_path / "hebbian-mirror.toml"
    path.write_text('device = "cpu"\n[detect]\nconf = 0.3\nmerge = true\n[ui]\nui_port = 8502\n')
    s = load_settings(path, environ={})
    assert (s.device, s.conf, s.merge, s.ui_port) == ("cpu", 0.3, True, 8502)
    path.write_text("[detect]\nport = 9000\n")
    with pytest.raises(ConfigError, match=r"\[detect\] port: it belongs in \[server\]"):
        load_settings(path, environ={})
    path.write_text("[detect]\nconf = 2\n")
    with pytest.raises(ConfigError, match=r"conf \(config file"):
        load_settings(path, environ={})


def test_scoped_keys_from_toml_environment_and_flags(tmp_path):
    config = tmp_path / "keys.toml"
    config.write_text(
        '[server]\napi_key = "all-of-it-0123"\napi_keys = [\n'
        '  { name = "nvr", key = "change-me-view-0001", scopes = ["view"] },\n'
        '  { key = "change-me-admin-002", scopes = ["admin", "view"] },\n]\n'
    )
    settings = load_settings(config, environ={})
    assert settings.scopes_of("change-me-view-0001") == ("nvr", frozenset({"view"}))
    assert settings.scopes_of("change-me-admin-002")[1] == {"admin", "view"}
    assert settings.scopes_of("all-of-it-0123")[1] == {"detect", "view", "review", "admin"}
    assert settings.scopes_of("wrong") is None and settings.scopes_of(None) is None
    from_env = load_settings(environ={"HEBBIAN_MIRROR_API_KEYS": "view,detect:env-key-0123456"})
    assert from_env.scopes_of("env-key-0123456")[1] == {"view", "detect"}
    flags = load_settings(environ={}, api_keys=["review:flag-key-0123456"])
    assert flags.scopes_of("flag-key-0123456")[1] == {"review"}
    assert load_settings(environ={}).scopes_of(None)[1] == {"detect", "view", "review", "admin"}  # no keys: open
    for bad in ("view:short", "nope:long-enough-key", "no-colon-key-0123"):
        with pytest.raises(ConfigError):
            load_settings(environ={}, api_keys=[bad])


def test_a_secret_file_given_higher_up_wins_over_the_secret_lower_down(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-the-file-0123\n")
    config = tmp_path / "c.toml"
    config.write_text('[server]\napi_key = "from-the-toml-0123"\n')
    env = {"HEBBIAN_MIRROR_API_KEY_FILE": str(secret)}
    assert load_settings(config, environ=env).api_key == "from-the-file-0123"
    assert load_settings(config, environ=env, api_key="from-the-flag-0123").api_key == "from-the-flag-0123"
    with pytest.raises(ConfigError, match="api_key_file: cannot read"):
        load_settings(environ={}, api_key_file=str(tmp_path / "missing"))
