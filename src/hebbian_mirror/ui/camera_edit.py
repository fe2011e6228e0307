"""Editing one camera in the UI (admin keys): its whole ``[[cameras]]`` entry as TOML (every setting), and zones
and masks drawn by clicking on its newest frame. Saving sends the entry to ``PUT /v1/cameras/{name}``: the server
checks it, restarts the camera with it and writes it into its camera file."""

from __future__ import annotations

import io
import tomllib
from typing import Any

import streamlit as st
from PIL import Image, ImageDraw

from hebbian_mirror.streams.rules import parse_zone
from hebbian_mirror.ui.client import Client, ServerError

MASK = "a mask: detections there are ignored (every rule)"


def _drawn(frame: bytes, entry: dict[str, Any], points: list[tuple[float, float]]) -> Image.Image:
    """The frame with the entry's masks (red), its rules' zones (green) and the outline being drawn (yellow);
    outlines in pixels or frame fractions, as stored."""
    image = Image.open(io.BytesIO(frame)).convert("RGB")
    w, h = image.size
    draw = ImageDraw.Draw(image, "RGBA")

    def pixels(polygon: list | str) -> list[tuple[float, float]]:
        points = parse_zone(polygon) if isinstance(polygon, str) else polygon  # "x1,y1,x2,y2,..." too
        relative = all(0 <= c <= 1 for p in points for c in p)
        return [(x * w, y * h) if relative else (x, y) for x, y in points]

    masks = list(entry.get("masks", [])) + [m for r in entry.get("rules", []) for m in r.get("masks", [])]
    for mask in masks:
        draw.polygon(pixels(mask), fill=(255, 0, 0, 70), outline=(255, 0, 0, 255))
    for zone in (z for r in entry.get("rules", []) for z in r.get("zones", [])):
        draw.polygon(pixels(zone), fill=(0, 255, 0, 50), outline=(0, 200, 0, 255))
    if points:
        drawn = pixels(points) if len(points) > 2 else [(x * w, y * h) for x, y in points]
        if len(drawn) > 2:
            draw.polygon(drawn, outline=(255, 220, 0, 255), width=3)
        for x, y in drawn:
            draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(255, 220, 0, 255))
    return image


def _save(client: Client, name: str, entry: dict[str, Any]) -> bool:
    try:
        client.put_camera(name, entry)
    except ServerError as exc:
        st.error(str(exc))
        return False
    st.session_state["edit_saved"] = f"Saved {name}: the camera restarted with it; the server's camera file keeps it."
    return True


def camera_editor(client: Client) -> None:
    """Pick a configured camera; edit its entry as TOML or draw a zone or mask on its newest frame."""
    from streamlit_image_coordinates import streamlit_image_coordinates

    try:
        entries = {c["name"]: c for c in client.cameras()}
    except ServerError as exc:
        st.error(str(exc))
        return
    if not entries:
        return
    st.subheader("Edit a camera")
    if saved := st.session_state.pop("edit_saved", None):  # said once, after the rerun that shows the new entry
        st.success(saved)
    name = st.selectbox("Camera", list(entries), key="edit_camera")
    entry = entries[name]
    import tomlkit

    shown = tomlkit.dumps(entry)
    text = st.text_area(
        "Its settings (the [[cameras]] entry; every field: docs/cameras.md)",
        shown,
        height=240,
        key=f"edit_toml_{name}_{hash(shown)}",  # a new entry (saved here or elsewhere): a new box showing it
    )
    if st.button("Save settings", key=f"edit_save_{name}", icon=":material/save:"):
        try:
            changed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            st.error(f"Not valid TOML: {exc}")
        else:
            if _save(client, name, changed):
                st.rerun()
    frame = client.latest_frame(name)
    if frame is None:
        st.info(f"{name}: no frame yet to draw on (a camera restarts when saved).")
        st.button("Look again", key=f"edit_again_{name}", icon=":material/refresh:")
        return
    points: list[tuple[float, float]] = st.session_state.setdefault(f"outline_{name}", [])
    st.caption(f"Click the corners of a zone or a mask on the picture, then save it: {len(points)} corner(s) clicked.")
    click = streamlit_image_coordinates(_drawn(frame, entry, points), key=f"draw_{name}", width="stretch")
    if click and click.get("unix_time") != st.session_state.get(f"last_click_{name}"):
        st.session_state[f"last_click_{name}"] = click.get("unix_time")
        points.append((round(click["x"] / click["width"], 4), round(click["y"] / click["height"], 4)))
        st.rerun()
    rules = entry.get("rules", [])
    targets = [MASK, *(f"a zone of the {r['label']} rule: only there it counts" for r in rules)]
    target = st.radio("Save the outline as", targets, key=f"outline_as_{name}")
    left, right = st.columns(2)
    if left.button("Save outline", key=f"outline_save_{name}", disabled=len(points) < 3):
        polygon = [list(p) for p in points]
        if target == MASK:
            entry = entry | {"masks": [*entry.get("masks", []), polygon]}
        else:
            i = targets.index(target) - 1
            rules = [dict(r) for r in rules]
            rules[i]["zones"] = [*rules[i].get("zones", []), polygon]
            entry = entry | {"rules": rules}
        if _save(client, name, entry):
            points.clear()
            st.rerun()
    if right.button("Clear outline", key=f"outline_clear_{name}", disabled=not points):
        points.clear()
        st.rerun()
