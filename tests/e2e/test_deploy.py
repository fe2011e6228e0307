"""The container files: compose.yaml (alone, with its GPU block uncommented, with compose.dev.yaml) as
docker-compose reads it, and the Dockerfile: its stages, what its builder installs, and its serving contract,
ENTRYPOINT + CMD with its ENV, run as is on this machine until its own HEALTHCHECK passes, then SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from ..conftest import REPO, WEIGHTS
from ..server_process import free_port

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
COMPOSE_DEV = REPO / "compose.dev.yaml"
VENV = Path(sys.prefix)  # stands for the image's /opt/venv
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SERVICES = {"api", "ui", "mlflow", "mqtt"}
VOLUMES = {"weights", "events", "mlflow-db", "mlflow-artifacts"}


# ---- the Dockerfile, read as Docker reads it


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Image:
    """A stage's configuration with what it inherits from the stages it is built FROM."""

    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)


def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    logical, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue  # comments and blank lines, also inside a continued instruction
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        logical.append((pending + raw).strip())
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: {line}"
            current = found[words[2]] = Stage(words[2], words[0])
        elif current is not None:
            current.instructions.append((instruction, args))
    return found


def image(target: str) -> Image:
    all_stages = stages()
    stage = all_stages[target]
    config = image(stage.base) if stage.base in all_stages else Image()
    for instruction, args in stage.instructions:
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV KEY=VALUE expected: {args}"
                config.env[key] = value
        elif instruction == "USER":
            config.user = args
        elif instruction == "ENTRYPOINT":
            config.entrypoint, config.cmd = json.loads(args), []  # Docker resets CMD with ENTRYPOINT
        elif instruction == "CMD":
            config.cmd = json.loads(args)
        elif instruction == "HEALTHCHECK":
            options, sep, command = args.partition(" CMD ")
            assert sep and all(o.startswith("--") for o in options.split()), args
            config.healthcheck = json.loads(command)
        elif instruction == "VOLUME":
            config.volumes += json.loads(args)
        elif instruction == "EXPOSE":
            config.expose += args.split()
    return config


def runs() -> list[str]:
    return [args for stage in stages().values() for instruction, args in stage.instructions if instruction == "RUN"]


def test_dockerfile_stages_and_contract():
    assert {"builder", "runtime", "cpu", "cuda"} <= stages().keys()
    assert stages()["cpu"].base == stages()["cuda"].base == "runtime"
    for target in ("cpu", "cuda"):
        config = image(target)
        assert config.user not in ("root", "0", "0:0") and not config.user.startswith(("root:", "0:"))
        assert config.entrypoint == ["hebbian-mirror", "serve"]
        assert config.cmd == []
        assert "8000" in config.expose
        assert config.env["HEBBIAN_MIRROR_HOST"] == "0.0.0.0"
        assert config.env["HEBBIAN_MIRROR_PORT"] == "8000"
        assert config.env["PATH"].startswith("/opt/venv/bin:")
        assert {config.env["HEBBIAN_MIRROR_WEIGHTS"], config.env["HEBBIAN_MIRROR_EVENTS_DIR"]} <= set(config.volumes)
        assert config.healthcheck[0] == "python" and "/ready" in config.healthcheck[-1]
        assert "urllib" in config.healthcheck[-1] and "HEBBIAN_MIRROR_PORT" in config.healthcheck[-1]
    assert image("cuda").env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # each target's venv comes from its own builder
    copies = {name: [a for i, a in s.instructions if i == "COPY"] for name, s in stages().items()}
    assert copies["cpu"] == ["--from=builder-cpu /opt/venv /opt/venv"]
    assert copies["cuda"] == ["--from=builder-cuda /opt/venv /opt/venv"]


def test_every_env_name_is_a_real_setting():
    from hebbian_mirror.config import Settings, env_name

    names = {env_name(f) for f in Settings.model_fields}
    used = {k for t in ("cpu", "cuda") for k in image(t).env if k.startswith("HEBBIAN_MIRROR_")}
    for files in ([COMPOSE], [COMPOSE, COMPOSE_DEV]):
        for service in compose_config(*files)["services"].values():
            used |= {k for k in service.get("environment", {}) if k.startswith("HEBBIAN_MIRROR_")}
    assert used and used <= names, used - names


def test_the_builder_installs_from_pyproject_only(tmp_path):
    """No second list of packages: pip installs requirement files generated from pyproject.toml, the torch
    pair from PyTorch's CPU index, and the project itself."""
    copies = [a.split() for s in stages().values() for i, a in s.instructions if i == "COPY"]
    from_context = {src for words in copies if not words[0].startswith("--from=") for src in words[:-1]}
    assert from_context == {"pyproject.toml", "README.md", "src"}
    generator = [run for run in runs() if "pyproject.toml" in run]
    assert len(generator) == 1
    generated = set(re.findall(r"open\('([\w.-]+)', 'w'\)", generator[0]))
    installs_project = 0
    for run in runs():
        for segment in re.split(r"&&|\|\||;", run):
            if "pip install" not in segment:
                continue
            words = shlex.split(segment)
            args = iter(words[words.index("install") + 1 :])
            for word in args:
                if word in ("-r", "--requirement"):
                    assert next(args) in generated, segment
                elif word == "--index-url":
                    assert next(args) == CPU_INDEX, segment
                elif word == "--no-deps":
                    pass
                else:
                    assert word == ".", f"pip installs only pyproject's lists and the project: {segment}"
                    installs_project += 1
    assert installs_project == 2  # builder-cpu and builder-cuda

    # the generator, run here on this pyproject.toml, gives its dependencies and its torch lines
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    env = dict(os.environ, PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    subprocess.run(["sh", "-c", generator[0]], cwd=tmp_path, env=env, check=True, timeout=30)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert (tmp_path / "dependencies.txt").read_text().split("\n")[:-1] == deps
    torch = (tmp_path / "torch.txt").read_text().split()
    assert sorted(re.split(r"[^\w.-]", t)[0] for t in torch) == ["torch", "torchvision"]
    assert set(torch) <= set(deps)


def test_dockerignore_keeps_the_context_to_what_the_image_installs():
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"  # .venv, .git, runs, mlruns, mlflow.db, caches, weights: all out
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}
    assert "**/__pycache__" in patterns


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value.replace("/opt/venv", str(VENV)))


def test_the_images_command_serves_until_sigterm_and_its_healthcheck_passes(tmp_path):
    """What `docker run hebbian-mirror:cpu` runs, here: the ENTRYPOINT + CMD with the image's ENV (its venv
    being this checkout's), only the port, the weights and the events folder changed."""
    config = image("cpu")
    env = dict(os.environ)
    for key, value in config.env.items():
        env[key] = expand(value, env)
    port = free_port()
    changed = {
        "HEBBIAN_MIRROR_PORT": str(port),
        "HEBBIAN_MIRROR_WEIGHTS": str(WEIGHTS),
        "HEBBIAN_MIRROR_EVENTS_DIR": str(tmp_path / "events"),
    }
    assert changed.keys() <= config.env.keys()
    env |= changed
    command = config.entrypoint + config.cmd
    program = shutil.which(command[0], path=env["PATH"])
    assert program and Path(program).parent == VENV / "bin", program
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([program, *command[1:]], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, f"exited with {proc.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"/ready not 200 after 45 s:\n{log_path.read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)

        check = config.healthcheck
        python = shutil.which(check[0], path=env["PATH"])
        assert python and Path(python).parent == VENV / "bin"
        done = subprocess.run([python, *check[1:]], env=env, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        nothing_there = env | {"HEBBIAN_MIRROR_PORT": str(free_port())}
        assert subprocess.run([python, *check[1:]], env=nothing_there, capture_output=True, timeout=10).returncode

        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


# ---- compose.yaml, as docker-compose reads it


def compose_config(*files: Path, text: str | None = None, env: dict[str, str] | None = None) -> dict:
    """``docker-compose [-f FILE]... config``, parsed; ``text`` is read instead of the files (relative paths
    still from the repository)."""
    program = shutil.which("docker-compose")
    assert program, "docker-compose is missing: apt-get install docker-compose (make test installs it)"
    names = ["-"] if text is not None else [str(f) for f in files]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "HM_", "HEBBIAN_MIRROR_API_KEY"))}
    done = subprocess.run(
        [program, "--project-directory", str(REPO), *(a for n in names for a in ("-f", n)), "config"],
        cwd=REPO,
        input=text,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def mounts(service: dict) -> dict[str, str]:
    """target → source of a service's volumes (short or long syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def check_stack(config: dict) -> None:
    services = config["services"]
    assert services.keys() == SERVICES
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and not service["healthcheck"].get("disable"), name
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
    assert services["api"]["depends_on"].keys() == {"mqtt", "mlflow"}
    assert services["ui"]["depends_on"].keys() == {"api"}
    assert config["volumes"].keys() == VOLUMES

    docker = image("cpu")
    api = services["api"]
    assert api["shm_size"]
    assert api["environment"]["HEBBIAN_MIRROR_MQTT"].startswith("mqtt://mqtt:1883")
    assert api["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert api["healthcheck"]["test"] == ["CMD", *docker.healthcheck]
    api_mounts = mounts(api)
    assert api_mounts[docker.env["HEBBIAN_MIRROR_WEIGHTS"]] == "weights"
    assert api_mounts[docker.env["HEBBIAN_MIRROR_EVENTS_DIR"]] == "events"
    assert "8000" in api["ports"][0]

    ui = services["ui"]
    assert ui["build"] == api["build"] and ui["image"] == api["image"]
    assert ui["entrypoint"] == ["hebbian-mirror", "ui", "--host", "0.0.0.0", "--api", "http://api:8000"]
    assert "/_stcore/health" in " ".join(ui["healthcheck"]["test"])

    mlflow = services["mlflow"]
    command = mlflow["command"] if isinstance(mlflow["command"], list) else shlex.split(mlflow["command"])
    options = dict(c.removeprefix("--").partition("=")[::2] for c in command if c.startswith("--"))
    assert "serve-artifacts" in options and "mlflow:5000" in options["allowed-hosts"].split(",")
    db_dir = options["backend-store-uri"].removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert mounts(mlflow) == {db_dir: "mlflow-db", options["artifacts-destination"]: "mlflow-artifacts"}
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])

    mqtt = services["mqtt"]
    assert mqtt["image"].startswith("eclipse-mosquitto")
    assert "mosquitto_sub" in mqtt["healthcheck"]["test"]
    conf = Path(mounts(mqtt)["/mosquitto/config/mosquitto.conf"])
    assert conf == REPO / "deploy" / "mosquitto.conf"
    assert {"listener 1883", "allow_anonymous true"} <= set(conf.read_text().splitlines())


def test_compose_stack():
    config = compose_config(COMPOSE)
    check_stack(config)
    assert config["services"]["api"]["build"]["target"] == "cpu"
    assert config["services"]["api"]["image"] == "hebbian-mirror:cpu"


def test_compose_gpu_block_when_uncommented():
    text = COMPOSE.read_text()
    block = re.search(r"^    # deploy:\n(?:    #   .*\n)+", text, re.M)
    assert block, "compose.yaml's commented GPU block is missing"
    uncommented = text.replace(block[0], re.sub(r"^    # ", "    ", block[0], flags=re.M))
    config = compose_config(text=uncommented, env={"HM_TARGET": "cuda"})
    check_stack(config)
    api = config["services"]["api"]
    assert api["build"]["target"] == "cuda" and api["image"] == "hebbian-mirror:cuda"
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_compose_dev_override():
    config = compose_config(COMPOSE, COMPOSE_DEV)
    check_stack(config)
    for name in ("api", "ui"):
        service = config["services"][name]
        assert mounts(service)["/app/src"] == str(REPO / "src")
        assert service["environment"]["PYTHONPATH"] == "/app/src"
    api = config["services"]["api"]["environment"]
    assert api["HEBBIAN_MIRROR_PROFILE"] == "dev" and api["HEBBIAN_MIRROR_LOG_LEVEL"] == "info"
