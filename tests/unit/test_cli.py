"""The command line's own shape: every option has help in one style, every command prints its help."""

from __future__ import annotations

from pathlib import Path


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
