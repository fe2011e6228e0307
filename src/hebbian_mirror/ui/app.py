"""Hebbian Mirror in the browser: upload photos (or take one), see what the server detects.

Run with `hebbian-mirror ui` (or `make ui`). The page only talks to the server's HTTP API; it loads no model.
Settings from the command line arrive as environment variables: HEBBIAN_MIRROR_UI_API (server URL),
HEBBIAN_MIRROR_UI_DANGEROUS (comma-separated classes that raise the alert), HEBBIAN_MIRROR_UI_SOURCES (the URL
prefixes and folders the page may load images from, one per line; without it the URL / path field is off).
"""

from __future__ import annotations

import os

import streamlit as st

from hebbian_mirror.classes import DANGEROUS_CLASSES
from hebbian_mirror.detection import Detection
from hebbian_mirror.errors import InvalidImageError
from hebbian_mirror.images import decode_image, draw_detections
from hebbian_mirror.ui.client import Client, Detected, ServerError, alerts, load_image_source

DEFAULT_API = os.environ.get("HEBBIAN_MIRROR_UI_API", "http://127.0.0.1:8000")
CONFIGURED_DANGEROUS = [
    c.strip()
    for c in os.environ.get("HEBBIAN_MIRROR_UI_DANGEROUS", ",".join(DANGEROUS_CLASSES)).split(",")
    if c.strip()
]

ALLOWED_SOURCES = [s.strip() for s in os.environ.get("HEBBIAN_MIRROR_UI_SOURCES", "").splitlines() if s.strip()]

st.set_page_config(page_title="Hebbian Mirror", page_icon="🪞", layout="wide")


def sidebar() -> tuple[Client | None, dict | None, dict]:
    """Server connection, status and the detection settings. Returns the client, the chosen model's info
    (or ``None`` when the server cannot be used) and the settings."""
    st.sidebar.title("🪞 Hebbian Mirror")
    url = st.sidebar.text_input("Server", DEFAULT_API, key="api_url", help="The Hebbian Mirror server's address.")
    key = st.sidebar.text_input("API key", "", key="api_key", type="password", help="Only if the server has one.")
    client = Client(url, key or None)
    settings: dict = {}
    try:
        health = client.health()
        ready = client.ready()
        models = client.models() if ready.get("ready") else []
    except ServerError as exc:
        st.sidebar.error(str(exc))
        return None, None, settings
    if not ready.get("ready"):
        states = ", ".join(f"{k}: {v}" for k, v in ready.get("models", {}).items())
        st.sidebar.warning(f"Server {health.get('version', '')} is up but not ready ({states}).")
        return None, None, settings
    names = [m["name"] for m in models]
    model = st.sidebar.selectbox("Model", names, key="model")
    info = next(m for m in models if m["name"] == model)
    st.sidebar.success(
        f"Server ready (v{health.get('version', '?')}): {len(models)} model(s); {model} on {info.get('device', '?')}"
    )
    settings["conf"] = st.sidebar.slider("Confidence threshold", 0.0, 1.0, 0.25, 0.01, key="conf")
    settings["iou"] = st.sidebar.slider("Overlap (NMS IoU) threshold", 0.0, 1.0, 0.45, 0.01, key="iou")
    settings["classes"] = st.sidebar.multiselect("Only these classes", info.get("classes", []), key="classes")
    st.sidebar.divider()
    options = sorted(set(CONFIGURED_DANGEROUS) | set(info.get("classes", [])))
    settings["dangerous"] = st.sidebar.multiselect(
        "Dangerous classes",
        options,
        default=CONFIGURED_DANGEROUS,
        key="dangerous",
        help="Finding one of these above the alert threshold raises the alert.",
    )
    known = [c for c in settings["dangerous"] if c in info.get("classes", [])]
    st.sidebar.caption(f"{model} knows: {', '.join(known) if known else 'none of them'}")
    settings["alert_conf"] = st.sidebar.slider("Alert threshold", 0.0, 1.0, 0.5, 0.01, key="alert_conf")
    st.sidebar.divider()
    settings["compare"] = st.sidebar.checkbox("Compare with a second model", key="compare", disabled=len(names) < 2)
    if settings["compare"]:
        others = [n for n in names if n != model]
        settings["model_b"] = st.sidebar.selectbox("Second model", others, key="model_b")
    return client, info, settings


def collect_images() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader(
        "Photos",
        type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"],
        accept_multiple_files=True,
        key="uploads",
    )
    images = [(u.name, u.getvalue()) for u in uploads or []]
    with st.expander("📷 Take a photo"):
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


def show_result(name: str, data: bytes, result: Detected, settings: dict, info: dict) -> None:
    found = alerts(result.detections, {c.lower() for c in settings["dangerous"]}, settings["alert_conf"])
    if found:
        total = sum(found.values())
        what = ", ".join(f"{n} × {label}" for label, n in found.items())
        st.error(f"## 🚨 ALERT: {total} dangerous object{'s' if total > 1 else ''} — {what}", icon="🚨")
    try:
        image = decode_image(data)
    except InvalidImageError:
        image = None
    if image is not None:
        dets = [Detection(tuple(d["box"]), d["score"], d["class_id"], d["label"]) for d in result.detections]
        st.image(draw_detections(image, dets), caption=f"{name} — {result.model}", width="stretch")
    display = info.get("display_names") or {}
    rows = [
        {
            "label": d["label"],
            "display name": display.get(d["label"], d["label"]),
            "confidence": round(d["score"], 3),
            "x1": round(d["box"][0]),
            "y1": round(d["box"][1]),
            "x2": round(d["box"][2]),
            "y2": round(d["box"][3]),
        }
        for d in result.detections
    ]
    st.markdown(f"**{len(rows)} object{'s' if len(rows) != 1 else ''}** found by `{result.model}`")
    if rows:
        st.table(rows)
    t = result.timing
    st.caption(
        f"server timing: queue {t.get('queue_ms', 0):.1f} ms · inference {t.get('inference_ms', 0):.1f} ms · "
        f"total {t.get('total_ms', 0):.1f} ms · batch of {t.get('batch_size', 1)}"
    )


def main() -> None:
    client, info, settings = sidebar()
    st.title("What does the mirror see?")
    images = collect_images()
    if client is None or info is None:
        st.info("Connect to a ready server (sidebar) to detect objects.")
        return
    if not images:
        st.info(
            "Upload one or more photos or take one with the camera"
            + (", or give a URL or path." if ALLOWED_SOURCES else ".")
        )
        return
    models = [info["name"]] + ([settings["model_b"]] if settings.get("compare") and settings.get("model_b") else [])
    for name, data in images:
        st.subheader(name)
        columns = st.columns(len(models))
        for column, model in zip(columns, models, strict=True):
            with column:
                try:
                    result = client.detect(data, name, model, settings["conf"], settings["iou"], settings["classes"])
                except ServerError as exc:
                    st.error(str(exc))
                    continue
                show_result(name, data, result, settings, info)
    client.close()


main()
