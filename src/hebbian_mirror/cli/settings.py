"""``settings``: every setting with its flag, environment variable and default (``--markdown``: the table the
docs carry), or the values in force here (defaults < TOML < environment)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import COMPONENTS, Settings, env_name, load_settings
from .app import app
from .common import config_option, console

SECRETS = {"api_key", "webhook_secret", "ui_api_key"}  # never printed
URLS = {
    "models",
    "streams",
    "webhooks",
    "mqtt",
    "smtp",
    "ray_address",
    "ui_api",
    "ui_sources",
}  # printed without their passwords


def flags() -> dict[str, set[str]]:
    """Per setting, the flags the commands really take for it (a command's option named after the setting)."""
    import typer.main

    found: dict[str, set[str]] = {}
    for command in typer.main.get_command(app).commands.values():
        for sub in getattr(command, "commands", {}).values() or [command]:
            for param in sub.params:
                if param.name in Settings.model_fields:
                    found.setdefault(param.name, set()).update(
                        o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")
                    )
    return found


def settings_table() -> str:
    """Markdown: one table per settings component, one row per setting, from the components and the commands'
    own options (so the docs cannot drift from them)."""
    given = flags()
    out = []
    for component in COMPONENTS:
        out += [f"### {component.__name__}: {component.__doc__}", ""]
        out += ["| setting (TOML key) | flags | environment | default | what |", "|---|---|---|---|---|"]
        for name, field in component.model_fields.items():
            flag = ", ".join(f"`{f}`" for f in sorted(given.get(name, ()))) or "(TOML or environment)"
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            default = extra.get("default_help") or field.get_default(call_default_factory=True)
            if isinstance(default, list):
                default = ",".join(default)
            shown = "" if default in (None, "") else f"`{default}`"
            text = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {flag} | `{env_name(name)}` | {shown} | {text} |")
        out.append("")
    return "\n".join(out)


@app.command("settings")
def show_settings(
    markdown: bool = typer.Option(
        False, "--markdown", help="Print the table of every setting (docs/configuration.md's)."
    ),
    config: Path | None = config_option(),
) -> None:
    """The settings in force here (defaults < TOML < environment), as JSON; secrets are never printed."""
    if markdown:
        print(settings_table(), end="")
        return
    from ..streams.media import mask_url

    values = load_settings(config).model_dump(mode="json")
    for name in SECRETS:
        if values.get(name):
            values[name] = "(set)"
    values["api_keys"] = [k | {"key": "(set)"} for k in values.get("api_keys") or []]
    for name in URLS:  # a URL's password (rtsp://user:pass@..., mqtt://user:pass@...) never printed
        if isinstance(values.get(name), list):
            values[name] = [mask_url(v) for v in values[name]]
        elif values.get(name):
            values[name] = mask_url(values[name])
    console.print_json(json.dumps(values))
