"""Hebbian Mirror in the browser: upload photos (or take one), see what the server detects.

Run with `hebbian-mirror ui` (or `make ui`). The page only talks to the server's HTTP API; it loads no model.
Settings from the command line arrive as environment variables: HEBBIAN_MIRROR_UI_API (server URL),
HEBBIAN_MIRROR_UI_API_KEY (the server's API key, used when the sidebar's key field is empty; never sent to the
browser), HEBBIAN_MIRROR_UI_DANGEROUS (comma-separated classes that raise the alert), HEBBIAN_MIRROR_UI_SOURCES
(the URL prefixes and folders the page may load images from, one per line; without it the URL / path field is off).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import streamlit as st
from PIL import Image

from hebbian_mirror.classes import canonical_name
from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import Detections
from hebbian_mirror.errors import InvalidImageError
from hebbian_mirror.images import decode_image, draw_detections, encode_jpeg
from hebbian_mirror.ui.client import (
    Client,
    Detected,
    ServerError,
    alerts,
    digest,
    holdings,
    load_image_source,
)
from hebbian_mirror.ui.connection import connection

SETTINGS = load_settings()  # the page's own (`hebbian-mirror ui` hands its flags on through the environment)
CONFIGURED_DANGEROUS = list(SETTINGS.ui_dangerous)

ALLOWED_SOURCES = list(SETTINGS.ui_sources)
MAX_IMAGE_HEIGHT = 560  # pixels on the page: a tall photo must not push its table out of view
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

st.set_page_config(page_title="Hebbian Mirror", page_icon=":material/center_focus_strong:", layout="wide")


def display_names(infos: list[dict]) -> dict[str, str]:
    """Class name → the name people read, from the chosen models (the first model's name wins)."""
    names: dict[str, str] = {}
    for info in reversed(infos):
        names |= info.get("display_names") or {}
    return names


def sidebar() -> tuple[Client | None, list[dict], dict]:
    """Server connection, status and the detection settings. Returns the client, the chosen models' info (the
    first model, then the one it is compared with; none when the server cannot be used) and the settings."""
    client = connection(SETTINGS)
    settings: dict = {}
    try:
        health = client.health()
        ready = client.ready()
        models = client.models() if ready.get("ready") else []
    except ServerError as exc:
        st.sidebar.error(str(exc))
        return None, [], settings
    if not ready.get("ready"):
        states = ", ".join(f"{k}: {v}" for k, v in ready.get("models", {}).items())
        st.sidebar.warning(f"Server {health.get('version', '')} is up but not ready ({states}).")
        return None, [], settings
    names = [m["name"] for m in models]
    chosen = [st.sidebar.selectbox("Model", names, key="model")]
    if st.sidebar.checkbox("Compare with a second model", key="compare", disabled=len(names) < 2):
        chosen.append(st.sidebar.selectbox("Second model", [n for n in names if n != chosen[0]], key="model_b"))
    infos = [next(m for m in models if m["name"] == name) for name in chosen]
    st.sidebar.success(
        f"Server ready (v{health.get('version', '?')}): {len(models)} model(s); "
        + "; ".join(f"{i['name']} on {i.get('device', '?')}" for i in infos)
    )
    shown = display_names(infos)
    known = list(dict.fromkeys(c for info in infos for c in info.get("classes", [])))
    settings["conf"] = st.sidebar.slider("Confidence threshold", 0.0, 1.0, 0.25, 0.01, key="conf")
    settings["iou"] = st.sidebar.slider("Overlap (NMS IoU) threshold", 0.0, 1.0, 0.45, 0.01, key="iou")
    settings["merge"] = st.sidebar.toggle(
        "Box voting (merge)",
        key="merge",
        disabled=not any(i.get("refines") for i in infos),
        help="Each box kept becomes the score-weighted mean of the boxes of its class it overlaps: better-placed "
        "boxes, the same scores, no extra time. Darknet models only.",
    )
    settings["classes"] = st.sidebar.multiselect(
        "Only these classes", known, key="classes", format_func=lambda c: shown.get(c, c)
    )
    st.sidebar.divider()
    known_keys = {canonical_name(c) for c in known}
    unknown = [c for c in CONFIGURED_DANGEROUS if canonical_name(c) not in known_keys]  # no chosen model finds them
    configured = [c for c in known if canonical_name(c) in {canonical_name(d) for d in CONFIGURED_DANGEROUS}]
    offered = st.session_state.setdefault("dangerous_offered", set())
    if "dangerous" in st.session_state:  # another model chosen: keep what it knows, add its configured classes
        kept = [c for c in st.session_state["dangerous"] if c in known]
        st.session_state["dangerous"] = kept + [c for c in configured if c not in offered and c not in kept]
    else:
        st.session_state["dangerous"] = configured
    offered.update(configured)
    settings["dangerous"] = st.sidebar.multiselect(
        "Dangerous classes",
        sorted(known),
        key="dangerous",
        format_func=lambda c: shown.get(c, c),
        help="Finding one of these above the alert threshold raises the alert. Only classes the chosen model(s) "
        "know are offered.",
    )
    if unknown:
        st.sidebar.caption(f"Not known to the chosen model(s), so never alerted: {', '.join(unknown)}")
    dangerous = {canonical_name(c) for c in settings["dangerous"]}
    for info in infos:
        names_of = info.get("display_names") or {}
        found = [names_of.get(c, c) for c in info.get("classes", []) if canonical_name(c) in dangerous]
        st.sidebar.caption(f"{info['name']} knows: {', '.join(found) if found else 'none of them'}")
    settings["alert_conf"] = st.sidebar.slider("Alert threshold", 0.0, 1.0, 0.5, 0.01, key="alert_conf")
    return client, infos, settings


def collect_images() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader(
        "Photos",
        type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
        accept_multiple_files=True,
        key="uploads",
    )
    images = [(u.name, u.getvalue()) for u in uploads or []]
    with st.expander("Take a photo", icon=":material/photo_camera:"):
        shot = st.camera_input("Camera", key="camera")
        if shot is not None:
            images.append(("camera.jpg", shot.getvalue()))
    if not ALLOWED_SOURCES:  # the page's host fetches these: only where its operator allowed (--allow-source)
        return images
    source = st.text_input(
        "…or an image URL, or a path on the UI's machine",
        key="source",
        help="Allowed: " + ", ".join(ALLOWED_SOURCES),
    )
    if source.strip():
        try:
            images.append(load_image_source(source, ALLOWED_SOURCES))
        except ServerError as exc:
            st.error(str(exc))
    return images


def _encoded(image: Image.Image, png: bool) -> bytes:
    if not png:
        return encode_jpeg(image, quality=92)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(max_entries=32, ttl=3600, show_spinner=False)
def annotated(image_digest: str, _data: bytes, boxes: str, png: bool) -> tuple[bytes, bytes] | None:
    """The image (known by its digest) with ``boxes`` (JSON: box, score, class id, label) drawn, encoded as PNG
    or JPEG: in full, and at most :data:`MAX_IMAGE_HEIGHT` pixels tall for the page. ``None`` when the page
    cannot decode the image."""
    try:
        image = decode_image(_data)
    except InvalidImageError:
        return None
    shown = json.loads(boxes)
    drawn = draw_detections(image, Detections(shown["data"], shown["names"], (image.shape[1], image.shape[0])))
    full = _encoded(drawn, png)
    if drawn.height <= MAX_IMAGE_HEIGHT:
        return full, full
    drawn.thumbnail((drawn.width, MAX_IMAGE_HEIGHT), Image.Resampling.LANCZOS)
    return full, _encoded(drawn, png)


def show_result(slot: str, name: str, data: bytes, result: Detected, settings: dict, info: dict, wide: bool) -> None:
    """One model's answer for one image: the alert, the annotated image beside (``wide``) or above its table, and
    downloads of both. ``slot`` tells this answer's widgets from the others'."""
    names = info.get("display_names") or {}
    detections = result.found(info.get("classes") or [])
    dangerous = set(settings["dangerous"])
    found = alerts(detections, dangerous, settings["alert_conf"])
    if found:
        total = sum(found.values())
        what = ", ".join(f"{n} × {names.get(label, label)}" for label, n in found.items())
        held = holdings(detections, dangerous, settings["alert_conf"], names)
        who = ("\n\n" + "; ".join(dict.fromkeys(held)).capitalize() + ".") if held else ""
        st.error(
            f"## ALERT: {total} dangerous object{'s' if total > 1 else ''} — {what}{who}", icon=":material/warning:"
        )
    picture_area, table_area = st.columns([3, 2]) if wide else (st.container(), st.container())
    shown = detections.renamed(names)
    boxes = json.dumps({"data": shown.data.tolist(), "names": shown.class_names})
    png = data.startswith(PNG_SIGNATURE)
    picture = annotated(digest(data), data, boxes, png)
    if picture is not None:
        with picture_area:  # never wider than its column ("content"), never taller than MAX_IMAGE_HEIGHT
            st.image(picture[1], caption=f"{name} — {result.model}", width="content")
    rows = [
        {
            "label": d["label"],
            "display name": names.get(d["label"], d["label"]),
            "confidence": round(d["score"], 3),
            "x1": round(d["box"][0]),
            "y1": round(d["box"][1]),
            "x2": round(d["box"][2]),
            "y2": round(d["box"][3]),
        }
        for d in result.detections
    ]
    verified = any(d.get("verifier_score") is not None for d in result.detections)
    if verified:  # a model with a verifier stage: what each stage said of the boxes it looked at again
        for row, d in zip(rows, result.detections, strict=True):
            row["detector"] = round(d["detector_score"], 3) if d.get("verifier_score") is not None else None
            row["verifier"] = round(d["verifier_score"], 3) if d.get("verifier_score") is not None else None
    with table_area:
        st.markdown(f"**{len(rows)} object{'s' if len(rows) != 1 else ''}** found by `{result.model}`")
        if rows:
            st.table(rows)
        if verified:
            st.caption(
                "confidence combines the detector's score and the verifier's (a second look at each candidate "
                "of a dangerous class); both are shown for the boxes it checked"
            )
        t = result.timing
        st.caption(
            f"server timing: queue {t.get('queue_ms', 0):.1f} ms · inference {t.get('inference_ms', 0):.1f} ms · "
            f"total {t.get('total_ms', 0):.1f} ms · batch of {t.get('batch_size', 1)}"
        )
        stem = f"{Path(name).stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', Path(result.model).name)}"
        if picture is not None:
            st.download_button(
                "Annotated image",
                picture[0],
                f"{stem}.{'png' if png else 'jpg'}",
                "image/png" if png else "image/jpeg",
                key=f"download-image-{slot}",
                on_click="ignore",
                icon=":material/download:",
            )
        record = {
            "file": name,
            "model": result.model,
            "image": {"width": result.width, "height": result.height},
            "settings": {k: settings[k] for k in ("conf", "iou", "merge", "classes")},
            "detections": [d | {"display_name": names.get(d["label"], d["label"])} for d in result.detections],
            "timing": result.timing,
        }
        st.download_button(
            "Detections (JSON)",
            json.dumps(record, indent=2, ensure_ascii=False),
            f"{stem}.json",
            "application/json",
            key=f"download-json-{slot}",
            on_click="ignore",
            icon=":material/download:",
        )


def detect_and_show(client: Client, index: int, name: str, data: bytes, settings: dict, info: dict, wide: bool) -> None:
    """Ask ``info``'s model about one image (only for the chosen classes it knows) and show the answer."""
    classes = [c for c in settings["classes"] if c in info.get("classes", [])]
    if settings["classes"] and not classes:
        st.info(f"{info['name']} knows none of the chosen classes.")
        return
    try:
        merge = settings["merge"] and bool(info.get("refines"))  # a model without it is asked plainly
        result = client.detect(data, name, info["name"], settings["conf"], settings["iou"], classes, merge)
    except ServerError as exc:
        st.error(str(exc))
        return
    shown = settings | {"classes": classes, "merge": merge}
    show_result(f"{index}-{info['name']}", name, data, result, shown, info, wide)


def main() -> None:
    client, infos, settings = sidebar()
    st.title("What does the mirror see?")
    images = collect_images()
    if client is None or not infos:
        st.info("Connect to a ready server (sidebar) to detect objects.")
        return
    if not images:
        st.info(
            "Upload one or more photos or take one with the camera"
            + (", or give a URL or path." if ALLOWED_SOURCES else ".")
        )
        return
    for index, (name, data) in enumerate(images):
        st.subheader(name)
        areas = st.columns(len(infos)) if len(infos) > 1 else [st.container()]
        for area, info in zip(areas, infos, strict=True):
            with area:
                detect_and_show(client, index, name, data, settings, info, wide=len(infos) == 1)
    client.close()


HERE = Path(__file__).parent
st.navigation(
    [
        st.Page(main, title="Detect", icon=":material/center_focus_strong:", default=True),
        st.Page(HERE / "cameras.py", title="Cameras", icon=":material/videocam:"),
        st.Page(HERE / "events.py", title="Events", icon=":material/notifications:"),
    ]
).run()
