"""``watch``: cameras and video files through the model, with alarms, stored events and their delivery."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from ..config import Settings
from ..errors import CommandError, HebbianMirrorError
from .app import app
from .common import cli_settings, config_option, console
from .options import options


def _status(manager, started: float) -> Table:
    table = Table(title=f"watching for {time.time() - started:.0f} s (Ctrl-C to stop)", title_justify="left")
    for col in ("stream", "state", "fps in", "fps done", "frames", "dropped", "latency ms", "alarms", "active"):
        table.add_column(col, justify="left" if col in ("stream", "state", "active") else "right")
    for s in manager.describe():
        latency = s["latency_ms_p50"]
        table.add_row(
            s["name"],
            s["state"] + (f" ({s['error']})" if s["error"] and s["state"] in ("error", "reconnecting") else ""),
            f"{s['fps_in']:.1f}",
            f"{s['fps_processed']:.1f}",
            str(s["processed"]),
            str(s["dropped"]),
            "-" if latency is None else f"{latency:.0f}",
            str(s["alarms"]),
            ", ".join(s["active_alarms"]),
        )
    for sink, st in manager.delivery().items():
        state = "ok" if not st.get("last_error") else f"retrying: {st['last_error']}"
        table.add_row(sink, f"{st['delivered']} delivered, {st['depth']} waiting", "", "", "", "", "", "", state)
    return table


async def _load(settings):
    """The engine with the default model loaded as the server loads it (worker processes, batcher), and its alarm
    rules."""
    from ..serving.engine import Engine
    from ..streams.rules import stream_rules

    engine = Engine.hosting(settings)
    await engine.load_models({})
    host = engine.hosts[engine.default_model]
    if host.error:
        raise CommandError(f"model {host.name} failed to load: {host.error}")
    try:
        rules = stream_rules(settings, list(host.detector.class_names))
    except HebbianMirrorError as exc:
        await engine.close()
        raise CommandError(f"{exc} (choose the classes with --alarm)") from None
    return engine, host, rules


async def _watch(settings, sources: list[str], fps: float | None, realtime: bool | None, loop: bool) -> int:
    from ..streams.manager import StreamManager, split_stream
    from ..streams.watcher import StreamConfig

    engine, host, rules = await _load(settings)
    console.print(
        f"model {host.name}: alarms for {', '.join(r.label for r in rules)} "
        f"(score ≥ {rules[0].min_score:g}, {rules[0].needed} frames); events in {settings.events_dir}"
    )

    def on_event(kind: str, event) -> None:
        where = f"snapshot {settings.events_dir / 'media' / event.id / 'snapshot.jpg'}" if kind == "new" else ""
        console.print(
            f"[bold red]ALARM {kind.upper()}[/] {event.stream}: {event.label} score {event.top_score:.2f} "
            f"(event {event.id}) {where}",
            highlight=False,
        )

    manager = StreamManager.from_settings(settings, engine.frame_detector())
    manager.on_event = on_event
    stop = asyncio.Event()
    loop_ = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop_.add_signal_handler(sig, stop.set)
    started = time.time()
    try:
        await manager.start()
        for i, entry in enumerate(sources, 1):
            name, url = split_stream(entry, i)
            config = StreamConfig.from_settings(settings, name, url, rules, fps, realtime, loop, operator=True)
            try:
                await manager.add(config)
            except HebbianMirrorError as exc:  # gone since it was checked: the other sources go on
                console.print(f"[red]stream {name}: not started: {exc}[/]", highlight=False)
        finished = loop_.create_task(manager.wait())
        stopped = loop_.create_task(stop.wait())
        with Live(_status(manager, started), console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set() and not finished.done():
                await asyncio.wait({finished, stopped}, timeout=0.5)
                live.update(_status(manager, started))
        stopped.cancel()
    finally:
        await manager.close()
        await engine.close()
    failed = [s for s in manager.describe() if s["state"] == "error"]
    for s in failed:
        console.print(f"[red]stream {s['name']}: {s['error']}[/]", highlight=False)
    return 1 if failed else 0


# the settings watch takes, under the flags a camera user types
WATCH_FLAGS = {
    "models": ("--model", "-m"),
    "alarm_min_score": ("--min-score",),
    "alarm_frames": ("--frames",),
    "alarm_median_of": ("--median-of",),
    "alarm_end_after": ("--end-after",),
    "alarm_cooldown": ("--cooldown",),
    "stream_fps": ("--fps",),
    "webhooks": ("--webhook",),
    "events_dir": ("--out",),
    "offline": ("--offline/--online",),
}
WATCH_SETTINGS = [
    *("models", "alarm", "alarm_min_score", "alarm_frames", "alarm_median_of", "alarm_end_after", "alarm_cooldown"),
    *("stream_fps", "webhooks", "webhook_secret", "webhook_secret_file", "mqtt", "events_dir", "clip_seconds"),
    *("smtp", "smtp_ca_file", "email_to", "email_from", "thumbnails"),
    *("camera_offline_after", "camera_frozen_after", "camera_covered_after", "arm_schedule", "arm_timezone"),
    *("home_assistant", "home_assistant_prefix", "public_url", "link_hours"),
    *("device", "workers", "verify", "conf", "log_level", "weights_dir", "offline"),
]


@app.command()
@options(Settings, WATCH_SETTINGS, WATCH_FLAGS)
def watch(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(
        ..., help="Video files, rtsp:// or http(s):// URLs, /dev/videoN, image folders; NAME=URL names one."
    ),
    realtime: bool | None = typer.Option(None, "--realtime/--as-fast", help="Play files at their own pace."),
    loop: bool = typer.Option(False, "--loop", help="Replay files forever."),
    config: Path | None = config_option(),
    **_settings: Any,
) -> None:
    """Watch cameras or video files: detect, track, raise alarms, store events, deliver them."""
    from ..models.loader import prefetch
    from ..streams.manager import check_sources

    settings = cli_settings(ctx)
    if problems := check_sources(settings, sources):  # a mistyped path or URL is said now, before the model loads
        raise CommandError("; ".join(problems))
    prefetch([m.source for m in settings.served_models[:1]], settings)
    settings.models = [settings.served_models[0].source]
    raise typer.Exit(asyncio.run(_watch(settings, sources, settings.stream_fps, realtime, loop)))


DEFAULT_VARIANTS = (
    "5 frames=frames:5",
    "3 frames=frames:3",
    "median of 5=median_of:5",
    "5 frames, score 0.3=frames:5,min_score:0.3",
)


def _variant(spec: str, labels: list[str], base: dict) -> tuple[str, list]:
    """``NAME=key:value,key:value`` (AlarmRule fields) → the rules for every alarm label."""
    from ..streams.rules import make_rules

    name, sep, body = spec.partition("=")
    if not sep:
        raise CommandError(f"--rule {spec!r}: expected NAME=key:value,... e.g. '3 frames=frames:3'")
    values = dict(base)
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, _, value = item.partition(":")
        value = value.strip().lower()
        try:
            values[key.strip()] = (
                {"true": True, "false": False}[value]
                if value in ("true", "false")
                else (float(value) if "." in value else int(value))
            )
        except ValueError as exc:
            raise CommandError(f"--rule {spec!r}: {item!r} is not key:number (or key:true, key:false)") from exc
    return name.strip(), make_rules(labels, **values)


@app.command("evaluate-alarms")
@options(
    Settings, ["models", "alarm", "device", "workers", "verify", "log_level", "weights_dir", "offline"], WATCH_FLAGS
)
def evaluate_alarms(
    ctx: typer.Context,
    clips: Path = typer.Argument(..., help="Clip set folder (with clips.json).", exists=True, file_okay=False),
    rule: list[str] = typer.Option(
        [],
        "--rule",
        help="A rule variant NAME=key:value,... (any alarm rule field: frames, min_score, median_of, end_after, "
        "held, class_lock, stationary_after, ...); repeatable.",
    ),
    gate_refresh: float | None = typer.Option(
        None,
        "--gate-refresh",
        min=0.0,
        help="Also replay each variant behind the motion gate, a still scene checked every this many seconds.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the results as JSON here."),
    config: Path | None = config_option(),
    **_settings: Any,
) -> None:
    """Replay labelled clips through the alarm pipeline: alarms raised and missed, time to alarm, false alarms."""
    import json

    from ..models.loader import prefetch
    from ..streams.alarm_eval import evaluate_alarms as run_eval

    settings = cli_settings(ctx)
    prefetch([m.source for m in settings.served_models[:1]], settings)
    settings.models = [settings.served_models[0].source]

    async def main() -> dict:
        engine, _, rules = await _load(settings)
        labels = [r.label for r in rules]
        base = {"min_score": settings.alarm_min_score, "end_after": settings.alarm_end_after}
        try:
            variants = dict(_variant(v, labels, base) for v in (rule or DEFAULT_VARIANTS))
            detect = engine.frame_detector()
            return await run_eval(
                clips,
                detect,
                variants,
                progress=lambda m: console.print(m, highlight=False),
                motion_refresh=gate_refresh,
            )
        finally:
            await engine.close()

    results = asyncio.run(main())
    table = Table(title=f"alarms on {clips} with {settings.served_models[0].name}")
    cols = (
        "rule",
        "alarmed",
        "missed",
        "alarms/appearance",
        "time to alarm p50 s",
        "p95 s",
        "false alarms",
        "per hour",
        "frames checked",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "rule" else "right")

    def num(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    for name, r in results.items():
        table.add_row(
            name,
            f"{r['alarmed']}/{r['appearances']}",
            str(r["missed"]),
            num(r["alarms_per_appearance"]),
            num(r["time_to_alarm_median_s"]),
            num(r["time_to_alarm_p95_s"]),
            str(r["false_alarms"]),
            num(r["false_alarms_per_hour"], "{:.1f}") + f" ({r['negative_minutes']:.1f} min)",
            num(r["frames_checked"], "{:.0%}"),
        )
    console.print(table)
    kinds = sorted({k for r in results.values() for k in r["false_alarms_per_hour_by_kind"]})
    if len(kinds) > 1:  # a clip set of several kinds (shop clips): false alarms per hour on each
        by_kind = Table(title="false alarms per hour, by kind of clip")
        by_kind.add_column("rule")
        for kind in kinds:
            by_kind.add_column(kind, justify="right")
        for name, r in results.items():
            cells = [r["false_alarms_per_hour_by_kind"].get(k) for k in kinds]
            by_kind.add_row(
                name, *("-" if c is None else f"{num(c['per_hour'], '{:.1f}')} ({c['false_alarms']})" for c in cells)
            )
        console.print(by_kind)
    if out is not None:
        out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        console.print(f"results in {out}")


@app.command("new-secret")
def new_secret() -> None:
    """Print a new webhook signing secret (Standard Webhooks: whsec_ + 24 random bytes in base64) for
    --webhook-secret (or a file for --webhook-secret-file), and for the receiver that checks the signatures."""
    from ..streams.delivery import new_secret as make

    print(make())


app.command("webhook-secret", hidden=True)(new_secret)  # its earlier name
