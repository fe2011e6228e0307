"""One error tree: every error the product raises on purpose is a ``HebbianMirrorError`` declared in ``errors.py``
(HTTP-only and UI-only ones beside their code); the server maps them to statuses in one table and the command
line prints them as one line, while anything else (a bug) shows its traceback."""

from __future__ import annotations

import ast

import pytest
from typer.testing import CliRunner

from hebbian_mirror import errors
from hebbian_mirror.cli import app
from hebbian_mirror.server.errors import APIError, api_error

from .test_architecture import SRC, module_name

ALLOWED_ELSEWHERE = {
    "hebbian_mirror.server.errors": {"APIError", "BodyTooLargeError"},  # statuses only HTTP has
    "hebbian_mirror.ui.client": {"ServerError"},  # what the page shows of a server's answer
    "hebbian_mirror.streams.media": {"SourceEnded"},  # a file's last frame: control flow, not an error
}


def test_error_classes_live_in_errors_py():
    found = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id == "Exception")
                for b in node.bases
            ):
                found.setdefault(module_name(path), set()).add(node.name)
    found.pop("hebbian_mirror.errors")
    assert found == ALLOWED_ELSEWHERE


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (errors.ImageTooLargeError("too many pixels"), 413, "too many pixels"),
        (errors.DecodeTimeoutError("slow"), 422, "slow"),
        (errors.InvalidImageError("not an image"), 400, "not an image"),
        (errors.InvalidOptionError("conf must be in [0, 1]"), 422, "invalid parameter: conf must be in [0, 1]"),
        (errors.RuleError("bad zone"), 422, "bad zone"),
        (errors.ModelNotFoundError("unknown model 'x'"), 404, "unknown model 'x'"),
        (errors.QueueFullError("8 requests queued", retry_after=3), 503, "server busy: 8 requests queued"),
        (errors.WorkerCrashedError("worker died"), 503, "worker died; it is being restarted: try again"),
        (errors.UnavailableError("model m is still loading", retry_after=2), 503, "model m is still loading"),
        (errors.ModelLoadError("model m failed to load: boom"), 503, "model m failed to load: boom"),
    ],
)
def test_one_table_maps_errors_to_statuses(error, status, words):
    answer = api_error(error)
    assert (answer.status, answer.message) == (status, words)
    retry = getattr(error, "retry_after", None)
    assert answer.headers == ({"Retry-After": str(retry)} if retry else None)


def test_an_unmapped_product_error_is_a_500_and_an_api_error_is_itself():
    assert api_error(errors.TrackingError("mlflow down")).status == 500
    mine = APIError(499, "client disconnected")
    assert api_error(mine) is mine


def test_the_cli_prints_product_errors_in_one_line_and_bugs_with_their_traceback(monkeypatch, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing")])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: dataset not found: {tmp_path / 'missing'}"
    result = runner.invoke(app, ["--debug", "data", "stats", str(tmp_path / "missing")])
    assert result.exit_code == 1 and isinstance(result.exception, errors.DatasetError)  # --debug: the traceback

    def broken(*_args, **_kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("hebbian_mirror.datasets.load_splits", broken)
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)  # not turned into one line
