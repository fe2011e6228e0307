"""Events: the alarms the server raised, newest first, with their snapshots and clips, their review (acknowledge,
confirm, false alarm, with a note), and filters (a page of the UI; see app.py)."""

from __future__ import annotations

import time
from datetime import datetime

import streamlit as st

from hebbian_mirror.ui.client import Client, ServerError
from hebbian_mirror.ui.connection import connection

WINDOWS = {"Last hour": 3600, "Last day": 86400, "Last week": 7 * 86400, "All": None}
REVIEWS = {"acknowledged": "Acknowledge", "confirmed": "Confirm", "false_alarm": "False alarm"}
SHOWN = {"acknowledged": "Acknowledged", "confirmed": "Confirmed", "false_alarm": "False alarm"}
FILTERS = {"All": None, "Not reviewed": "unreviewed"} | {SHOWN[k]: k for k in REVIEWS}


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def headline(event: dict) -> str:
    """ "knife on door", or "Person holding a knife on door" when the alarm's object was in a person's hands;
    "Camera door offline: no frame for 10 s" for a camera's problem."""
    label = event["label"]
    if (event.get("extra") or {}).get("problem"):  # a camera's own problem, not an alarm
        return f"Camera {event['stream']} {label}" + (
            ": " + event["extra"]["detail"] if event["extra"].get("detail") else ""
        )
    if (event.get("extra") or {}).get("held_by"):
        label = f"Person holding {'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"
    return f"{label} on {event['stream']}"


def _plain(text: str) -> str:
    """Text from outside (a reviewer's name and note) shown as it is: markdown's characters escaped."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|~$:" else c for c in text)


def review_box(client: Client, event: dict, may_review: bool) -> None:
    """The event's review state, and the buttons that change it (for a key with the review scope)."""
    if (event.get("extra") or {}).get("problem"):  # a camera's problem: nothing to review
        return
    review = event.get("review")
    if review:
        by = f" by {_plain(review['by'])}" if review.get("by") else ""
        note = f": {_plain(review['note'])}" if review.get("note") else ""
        text = f"{SHOWN[review['state']]}{by}, {when(review['at'])}{note}"
        {"confirmed": st.error, "false_alarm": st.success}.get(review["state"], st.info)(text)
    else:
        st.warning("Not reviewed yet", icon=":material/visibility:")
    if not may_review:
        return
    note = st.text_input("Note", key=f"note_{event['id']}", placeholder="what you saw (optional)", max_chars=2000)
    for column, (state, label) in zip(st.columns(len(REVIEWS)), REVIEWS.items(), strict=True):
        if column.button(label, key=f"{state}_{event['id']}", disabled=bool(review and review["state"] == state)):
            try:
                client.review(event["id"], state, note or None)
            except ServerError as exc:
                st.error(str(exc))
            else:
                st.rerun()


def event_row(client: Client, event: dict, may_review: bool = False) -> None:
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
        review_box(client, event, may_review)
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
    waiting = sum(1 for e in recent if not e.get("review") and not (e.get("extra") or {}).get("problem"))
    if waiting:
        st.warning(f"{waiting} alarm(s) not reviewed yet", icon=":material/visibility:")
    a, b, c, d, f = st.columns(5)
    names = sorted(set(streams) | {e["stream"] for e in recent})
    stream = a.selectbox("Stream", ["All", *names], key="ev_stream")
    labels = sorted({e["label"] for e in recent})
    label = b.selectbox("Class", ["All", *labels], key="ev_label")
    window = c.selectbox("Time", list(WINDOWS), index=1, key="ev_window")
    review = d.selectbox("Review", list(FILTERS), key="ev_review")
    active = f.checkbox("Running only", key="ev_active")
    seconds = WINDOWS[window]
    try:
        events = client.events(
            stream=None if stream == "All" else stream,
            label=None if label == "All" else label,
            since=time.time() - seconds if seconds else None,
            active=True if active else None,
            review=FILTERS[review],
            limit=50,
        )
    except ServerError as exc:
        st.error(str(exc))
        return
    if not events:
        st.info("No event matches. Alarms from watched cameras appear here (see the Cameras page).")
    st.caption(f"{len(events)} event(s), newest first (at most 50)")
    may_review = "review" in client.scopes()
    for event in events:
        with st.container(border=True):
            event_row(client, event, may_review)


main(connection())
