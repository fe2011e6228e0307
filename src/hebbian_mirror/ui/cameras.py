"""Cameras: every watched stream's live annotated frame and numbers, an alarm banner, adding or removing a stream,
and (admin) editing a camera, zones and masks drawn on its frame (a page of the UI; see app.py)."""

from __future__ import annotations

import os

import streamlit as st

from hebbian_mirror.classes import DANGEROUS_CLASSES, canonical_name
from hebbian_mirror.config import load_settings
from hebbian_mirror.streams.policy import is_local, within
from hebbian_mirror.ui.camera_edit import camera_editor
from hebbian_mirror.ui.client import Client, ServerError
from hebbian_mirror.ui.connection import connection

SETTINGS = load_settings()
# Local paths the page may hand to the server: only inside the folders its operator allowed (--allow-source).
FOLDERS = [s for s in SETTINGS.ui_sources if "://" not in s and os.path.isdir(os.path.expanduser(s))]

STATE_WORDS = {
    "streaming": "live",
    "connecting": "connecting",
    "reconnecting": "reconnecting (the camera is not answering)",
    "ended": "finished (a file)",
    "error": "stopped by an error",
}


def stream_card(client: Client, stream: dict, admin: bool) -> None:
    name = stream["name"]
    left, right = st.columns([3, 2])
    with left:
        frame = client.latest_frame(name)
        if frame is not None:
            st.image(frame, caption=f"{name}: the newest processed frame", width="stretch")
        else:
            st.info(f"{name}: no frame yet.")
    with right:
        st.subheader(name)
        st.caption(stream["url"])
        st.write(f"State: **{STATE_WORDS.get(stream['state'], stream['state'])}**")
        if stream.get("error") and stream["state"] in ("error", "reconnecting"):
            st.warning(stream["error"])
        a, b, c = st.columns(3)
        a.metric("Frames/s in", f"{stream['fps_in']:.1f}")
        b.metric("Frames/s checked", f"{stream['fps_processed']:.1f}")
        latency = stream["latency_ms_p50"]
        c.metric("Latency", "-" if latency is None else f"{latency:.0f} ms")
        a.metric("Dropped", stream["dropped"], help="Live frames replaced by a newer one before being checked.")
        b.metric("Reconnects", stream["reconnects"])
        c.metric("Alarms", stream["alarms"])
        watched = ", ".join(r["label"] for r in stream.get("rules", [])) or "none"
        st.caption(f"Alarms for: {watched}")
        for problem in stream.get("problems", []):
            st.error(f"Camera {problem}", icon=":material/videocam_off:")
        arming_row(client, stream, admin)
        if admin and st.button("Remove", key=f"remove-{name}", icon=":material/delete:"):
            try:
                client.remove_stream(name)
                st.success(f"Stopped watching {name}.")
                st.rerun()
            except ServerError as exc:
                st.error(str(exc))


def arming_row(client: Client, stream: dict, admin: bool) -> None:
    """Whether the camera's alarms are delivered now, why, and (admin) the buttons that change it."""
    arming, name = stream.get("arming") or {}, stream["name"]
    mode = arming.get("mode", "schedule")
    why = "as its schedule says" if mode == "schedule" else f"set by {arming.get('by') or 'hand'}"
    windows = ", ".join(arming.get("windows") or []) or "always"
    if stream.get("armed", True):
        st.success(f"Armed ({why}): alarms are delivered", icon=":material/shield:")
    else:
        st.warning(f"Disarmed ({why}): alarms are stored, not delivered", icon=":material/shield:")
    st.caption(f"Schedule: {windows} ({arming.get('timezone', 'UTC')})")
    if not admin:
        return
    for column, (wanted, label) in zip(st.columns(3), (("armed", "Arm"), ("disarmed", "Disarm"),
                                                     ("schedule", "Follow schedule")), strict=True):  # fmt: skip
        if column.button(label, key=f"arm-{wanted}-{name}", disabled=mode == wanted):
            try:
                client.arm(name, wanted)
                st.rerun()
            except ServerError as exc:
                st.error(str(exc))


@st.fragment(run_every=1.0)
def live(client: Client, admin: bool) -> None:
    try:
        streams = client.streams()
    except ServerError as exc:
        st.error(str(exc))
        return
    alarms = [f"{label} on {s['name']}" for s in streams for label in s["active_alarms"]]
    if alarms:
        st.error("ALARM: " + "; ".join(alarms), icon=":material/warning:")
    if not streams:
        st.info(
            "No camera is being watched. Add one below, or start the server with "
            "`hebbian-mirror serve --stream NAME=URL` (a video file, rtsp:// or http:// URL, /dev/videoN)."
        )
    for stream in streams:
        with st.container(border=True):
            stream_card(client, stream, admin)


def add_form(client: Client) -> None:
    try:
        models = client.models()
    except ServerError:
        models = []
    known = models[0].get("classes", []) if models else []
    with st.expander("Add a camera or video", icon=":material/add:"), st.form("add-stream", clear_on_submit=False):
        name = st.text_input("Name", key="new_name", placeholder="shop-door")
        url = st.text_input("URL or file", key="new_url", placeholder="rtsp://user:pass@camera/stream")
        by_key = {canonical_name(c): c for c in known}  # the dangerous classes, as this model names them
        default = [by_key[k] for k in map(canonical_name, DANGEROUS_CLASSES) if k in by_key]
        alarm = st.multiselect("Alarm for", known, default=default, key="new_alarm")
        fps = st.number_input("Frames per second to check (0: all)", 0.0, 60.0, 0.0, key="new_fps")
        tls = st.checkbox(
            "Check the camera's TLS certificate",
            True,
            key="new_tls",
            help="Off only for a camera with a self-signed one.",
        )
        if st.form_submit_button("Watch"):
            if not name.strip() or not url.strip():
                st.error("Give the stream a name and a URL or file.")
                return
            if is_local(url.strip()) and not within(url.strip(), FOLDERS):
                where = ", ".join(FOLDERS) if FOLDERS else "none: start the UI with --allow-source FOLDER"
                st.error(f"Files can be watched only from the folders this page allows ({where}).")
                return
            try:
                client.add_stream(name.strip(), url.strip(), alarm, fps or None, tls)
                st.success(f"Watching {name.strip()}.")
            except ServerError as exc:
                st.error(str(exc))


client = connection(SETTINGS)
st.title("Cameras")
admin = "admin" in client.scopes()
if admin:
    add_form(client)
else:
    st.caption("This API key may watch the cameras but not add or remove them (that needs the admin scope).")
live(client, admin)
if admin:
    camera_editor(client)
