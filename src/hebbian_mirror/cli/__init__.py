"""The ``hebbian-mirror`` command line: one Typer app; each subcommand parses its options and delegates."""

from __future__ import annotations

from . import data, inference, serving, settings, stack, training, verifying, watching  # noqa: F401 - the modules register their commands
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
