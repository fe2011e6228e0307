"""Every command block of the README runs as pasted, so the README cannot rot.

Blocks run in order, each as one bash script with ``set -e``, in a scratch folder laid out like a fresh clone
(``.venv`` of this checkout, ``../shared`` beside it) with a scratch home whose weights cache ``make weights``
filled, as for a new user: no ``HEBBIAN_MIRROR_WEIGHTS`` (offline, as every test). A block preceded by
``<!-- readme-test: skip (why) -->`` is not run and must say why; ``<!-- readme-test: server (...) -->`` runs
against a real server the test starts, ``localhost:8000`` pointed at it.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from .conftest import REPO, SHARED
from .server_process import ServerProcess

FENCE = re.compile(r"(?:<!-- readme-test: (\w+)(?: \(([^)]*)\))? -->\n)?```(sh|bash)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    """(mode, reason, script) of every shell block of the README, in order."""
    found = [(m[1] or "run", m[2] or "", m[4]) for m in FENCE.finditer((REPO / "README.md").read_text())]
    assert len(found) >= 5, "the README's command blocks were not found"
    return found


def test_every_block_that_is_not_run_says_why():
    for mode, reason, script in blocks():
        assert mode in ("run", "skip", "server"), mode
        if mode == "skip":
            assert len(reason) > 10, f"a skipped README block must say why:\n{script}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh-clone layout: repo/ (this checkout's .venv and Makefile) and shared/ beside it; a new home whose
    weights cache ``make weights`` linked; the environment a new user's shell would have."""
    root = tmp_path_factory.mktemp("readme")
    repo = root / "repo"
    repo.mkdir()
    for name in (".venv", "Makefile", "pyproject.toml"):
        (repo / name).symlink_to(REPO / name)
    (root / "shared").symlink_to(SHARED)
    env = {k: v for k, v in os.environ.items() if k != "HEBBIAN_MIRROR_WEIGHTS"} | {"HOME": str(root / "home")}
    subprocess.run(["make", "-s", "weights"], cwd=repo, env=env, check=True, capture_output=True, timeout=60)
    assert (root / "home" / ".cache" / "hebbian-mirror" / "weights" / "yolov4-tiny.weights").is_symlink()
    return repo, env


def test_readme_commands_run_as_pasted(clone, tmp_path):
    repo, env = clone
    runnable = [(mode, script) for mode, _, script in blocks() if mode != "skip"]
    assert any(mode == "server" for mode, _ in runnable)
    server = ServerProcess(log=tmp_path / "server.log")
    try:
        for mode, script in runnable:
            if mode == "server":
                script = script.replace("localhost:8000", f"127.0.0.1:{server.port}")
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"README block failed:\n{script}\n--- stdout\n{done.stdout}\n{done.stderr}"
    finally:
        assert server.stop(), server.log()
    assert (repo / "runs" / "handheld" / "best.pt").is_file() and (repo / "runs" / "handheld.onnx").is_file()
