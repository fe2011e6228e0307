"""The command line as a user runs it: models, predict, errors."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_console_script_and_module_entry_points():
    for cmd in (
        [str(REPO / ".venv" / "bin" / "hebbian-mirror"), "--version"],
        [sys.executable, "-m", "hebbian_mirror", "--version"],
    ):
        if cmd[0].endswith("hebbian-mirror") and not (REPO / ".venv" / "bin" / "hebbian-mirror").exists():
            cmd = [sys.executable, "-m", "hebbian_mirror", "--version"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "hebbian-mirror" in result.stdout
