"""Settings are declared once: the docs' table of every setting is generated from them (and checked here), and
``serve`` takes a flag for every one of them."""

from __future__ import annotations

import re

import typer.main

from hebbian_mirror.cli import app
from hebbian_mirror.cli.settings import settings_table
from hebbian_mirror.config import Settings

from ..conftest import REPO

PAGE = REPO / "docs" / "configuration.md"


def test_the_docs_table_is_the_generated_one():
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"<!-- settings-table: begin -->\n(.*?)<!-- settings-table: end -->", text, re.S)
    assert found, f"{PAGE} lost its generated table"
    assert found[1] == settings_table(), (
        f"{PAGE} is out of date: paste the output of `.venv/bin/hebbian-mirror settings --markdown` between its markers"
    )
    assert sum(line.startswith("| `") for line in found[1].splitlines()) == len(Settings.model_fields)


def test_serve_takes_every_setting_and_ui_every_ui_setting():
    from hebbian_mirror.config import UiSettings

    commands = typer.main.get_command(app).commands
    taken = {p.name for p in commands["serve"].params}
    ui = set(UiSettings.model_fields)
    # --model is the repeatable `models`; cameras are tables of the settings (or camera) file, not flags
    assert set(Settings.model_fields) - taken == {"model", "cameras"} | ui
    assert ui <= {p.name for p in commands["ui"].params}


def test_train_takes_every_training_option():
    from hebbian_mirror.train.run_config import TrainConfig

    train = typer.main.get_command(app).commands["train"]
    assert set(TrainConfig.option_names()) - {p.name for p in train.params} == set()
