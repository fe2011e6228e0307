"""Events: the alarms the server raised, newest first, with their snapshots and clips, and filters (a page of
the UI; see app.py)."""

from __future__ import annotations

import time
from datetime import datetime

import streamlit as st

from hebbian_mirror.ui.client import Client, ServerError
from hebbian_mirror.ui.connection import connection

WINDOWS = {"Last hour": 3600, "Last day": 86400, "Last week": 7 * 86400, "All": None}


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def headline(event: dict) -> str:
    """ "knife on door", or "Person holding a knife on door" when the alarm's object was in a person's hands."""
    label = event["label"]
    if (event.get("extra") or {}).get("held_by"):
        label = f"Person holding {'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"
    return f"{label} on {event['stream']}"


def event_row(client: Client, event: dict) -> None:
    left, right = st.columns([1, 2])
    with left:
        snapshot = client.event_file(event["id"], "snapshot.jpg") if event["has_snapshot"] else None
        if snapshot:
            st.image(snapshot, width="stretch")
        else:
            st.caption("no snapshot")
    with right:
        st.subheader(headline(event))
        if event["active"]:
            st.error("Running now", icon=":material/warning:")
            length = "running"
        else:
            length = f"{event['end'] - event['start']:.1f} s"
        st.write(f"Started {when(event['start'])} · {length} · top score {event['top_score']:.2f}")
        st.caption(f"event {event['id']}, seen in {event['frames']} frames")
        if event["has_clip"]:
            with st.expander("Clip", icon=":material/movie:"):
                clip = client.event_file(event["id"], "clip.mp4")
                if clip:
                    st.video(clip, format="video/mp4")


def main(client: Client) -> None:
    st.title("Events")
    try:
        streams = [s["name"] for s in client.streams()]
        recent = client.events(limit=500)
    except ServerError as exc:
        st.error(str(exc))
        return
    a, b, c, d = st.columns(4)
    names = sorted(set(streams) | {e["stream"] for e in recent})
    stream = a.selectbox("Stream", ["All", *names], key="ev_stream")
    labels = sorted({e["label"] for e in recent})
    label = b.selectbox("Class", ["All", *labels], key="ev_label")
    window = c.selectbox("Time", list(WINDOWS), index=1, key="ev_window")
    active = d.checkbox("Running only", key="ev_active")
    seconds = WINDOWS[window]
    try:
        events = client.events(
            stream=None if stream == "All" else stream,
            label=None if label == "All" else label,
            since=time.time() - seconds if seconds else None,
            active=True if active else None,
            limit=50,
        )
    except ServerError as exc:
        st.error(str(exc))
        return
    if not events:
        st.info("No event matches. Alarms from watched cameras appear here (see the Cameras page).")
    st.caption(f"{len(events)} event(s), newest first (at most 50)")
    for event in events:
        with st.container(border=True):
            event_row(client, event)


main(connection())
