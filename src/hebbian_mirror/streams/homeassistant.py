"""Home Assistant over MQTT discovery: each watched camera becomes a device with a binary sensor per alarm class
(on while that alarm runs), a camera entity showing the latest alarm snapshot, a switch that arms and disarms it,
and a problem sensor (offline, frozen, covered); all unavailable when the server or the camera is.

The discovery configs are retained under ``HA_PREFIX/<component>/hebbian_mirror_<camera>/<object>/config``; the
states under ``PREFIX/cameras/<camera>/...``, derived from the delivered messages (so they follow the outbox: in
order, at least once, and a disarmed camera's alarms, never delivered, never turn a sensor on).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..classes import canonical_name


def object_id(text: str) -> str:
    """A name as Home Assistant's ids want it: lower case letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9_]+", "_", canonical_name(text).lower()).strip("_") or "x"


def discovery(prefix: str, ha_prefix: str, camera: str, labels: list[str]) -> dict[str, str]:
    """The retained discovery configs (topic → JSON) for ``camera`` and its alarm classes ``labels``."""
    node, base = f"hebbian_mirror_{object_id(camera)}", f"{prefix}/cameras/{camera}"
    device = {"identifiers": [node], "name": camera, "manufacturer": "Hebbian Mirror", "model": "camera"}
    availability = {
        "availability": [
            {"topic": f"{prefix}/availability"},
            {"topic": f"{base}/availability", "payload_available": "online", "payload_not_available": "offline"},
        ],
        "availability_mode": "all",
    }
    common = {"device": device, **availability}
    configs: dict[str, dict[str, Any]] = {}
    for label in labels:
        key = object_id(label)
        configs[f"{ha_prefix}/binary_sensor/{node}/{key}/config"] = common | {
            "name": label,
            "unique_id": f"{node}_{key}",
            "state_topic": f"{base}/{key}",
            "device_class": "safety",
            "payload_on": "ON",
            "payload_off": "OFF",
        }
    configs[f"{ha_prefix}/camera/{node}/snapshot/config"] = common | {
        "name": "Alarm snapshot",
        "unique_id": f"{node}_snapshot",
        "topic": f"{base}/snapshot",
    }
    configs[f"{ha_prefix}/switch/{node}/arm/config"] = common | {
        "name": "Armed",
        "unique_id": f"{node}_arm",
        "state_topic": f"{base}/arm",
        "command_topic": f"{base}/arm/set",
        "payload_on": "ON",
        "payload_off": "OFF",
        "icon": "mdi:shield-home",
    }
    configs[f"{ha_prefix}/binary_sensor/{node}/problem/config"] = {"device": device} | {
        "name": "Camera problem",
        "unique_id": f"{node}_problem",
        "state_topic": f"{base}/problem",
        "device_class": "problem",
        "payload_on": "ON",
        "payload_off": "OFF",
        "availability": [{"topic": f"{prefix}/availability"}],
    }
    return {topic: json.dumps(config) for topic, config in configs.items()}


def states(message: dict[str, Any], problems: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The retained states (topic under ``PREFIX/cameras/``, payload) a delivered message changes: an alarm
    class's sensor; the camera's problem sensor, on while any of its problems lasts (``problems``: each camera's,
    kept by the caller)."""
    data, kind = message.get("data") or {}, message.get("type", "")
    camera = data.get("stream")
    if not camera:
        return []
    if kind in ("alarm.new", "alarm.end"):
        return [(f"{camera}/{object_id(data['label'])}", "ON" if kind == "alarm.new" else "OFF")]
    if kind.startswith("camera."):
        active = problems.setdefault(camera, set())
        (active.discard if kind == "camera.ok" else active.add)(data["label"])
        return [(f"{camera}/problem", "ON" if active else "OFF")]
    return []
