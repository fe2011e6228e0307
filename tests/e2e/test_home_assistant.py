"""Home Assistant's MQTT discovery against a real broker (mosquitto), read as Home Assistant reads it: the
retained configs under homeassistant/, then the state, image, availability and command topics they name,
while a real server watches a real clip and raises an alarm."""

from __future__ import annotations

import json

from ..server_process import ServerProcess
from ..stream_peers import WEAPONS_MODEL, Mosquitto, alarm_clip, wait_for


def test_each_camera_appears_as_a_device_whose_entities_follow_its_alarms(tmp_path):
    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=1)
    broker = Mosquitto(tmp_path)
    seen: dict[str, list[bytes]] = {}
    ha = broker.client(lambda c, u, m: seen.setdefault(m.topic, []).append(m.payload))
    srv = None
    try:
        ha.subscribe([("homeassistant/#", 1), ("shop/#", 1)])
        srv = ServerProcess(
            "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--alarm", "pistol,phone",
            "--stream", f"door={clip}", "--events-dir", str(tmp_path / "ev"),
            "--mqtt", f"{broker.url}/shop", "--home-assistant",
            log=tmp_path / "server.log",
        )  # fmt: skip
        node = "hebbian_mirror_door"
        topics = {
            "pistol": f"homeassistant/binary_sensor/{node}/pistol/config",
            "phone": f"homeassistant/binary_sensor/{node}/phone/config",
            "snapshot": f"homeassistant/camera/{node}/snapshot/config",
            "arm": f"homeassistant/switch/{node}/arm/config",
            "problem": f"homeassistant/binary_sensor/{node}/problem/config",
        }
        wait_for(lambda: all(t in seen for t in topics.values()), timeout=30)
        configs = {k: json.loads(seen[t][-1]) for k, t in topics.items()}
        for name, config in configs.items():  # what Home Assistant needs of each
            assert config["unique_id"].startswith(node) and config["device"]["identifiers"] == [node], name
            assert {"topic": "shop/availability"} in config["availability"], name
        pistol = configs["pistol"]
        assert pistol["state_topic"] == "shop/cameras/door/pistol" and pistol["device_class"] == "safety"
        assert {a["topic"] for a in pistol["availability"]} == {"shop/availability", "shop/cameras/door/availability"}
        assert configs["snapshot"]["topic"] == "shop/cameras/door/snapshot"
        assert configs["arm"]["command_topic"] == "shop/cameras/door/arm/set"
        wait_for(lambda: seen.get("shop/cameras/door/availability", [b""])[-1] == b"online")
        wait_for(lambda: seen.get("shop/availability", [b""])[-1] == b"online")
        # the clip's pistol: the sensor goes on, the snapshot comes, then the sensor goes off
        wait_for(lambda: seen.get(pistol["state_topic"], [])[-1:] == [b"OFF"], timeout=90)
        assert seen[pistol["state_topic"]] == [b"ON", b"OFF"]
        picture = seen[configs["snapshot"]["topic"]][-1]
        assert picture[:3] == b"\xff\xd8\xff"
        assert configs["phone"]["state_topic"] not in seen  # no phone alarm: never reported on
        wait_for(lambda: seen.get(configs["arm"]["state_topic"], [b""])[-1] == b"ON")
        ha.publish(configs["arm"]["command_topic"], "OFF", qos=1)  # the switch, flipped in Home Assistant
        wait_for(lambda: seen[configs["arm"]["state_topic"]][-1] == b"OFF")
        # a newcomer (Home Assistant restarting) finds everything retained
        late: dict[str, bytes] = {}
        other = broker.client(lambda c, u, m: late.__setitem__(m.topic, m.payload))
        other.subscribe([("homeassistant/#", 1), ("shop/cameras/#", 1)])
        try:
            wait_for(lambda: set(topics.values()) <= set(late) and configs["snapshot"]["topic"] in late, timeout=10)
            assert late[configs["arm"]["state_topic"]] == b"OFF" and late[pistol["state_topic"]] == b"OFF"
        finally:
            other.loop_stop()
            other.disconnect()
    finally:
        if srv is not None:
            assert srv.stop(), srv.log()
        ha.loop_stop()
        ha.disconnect()
        broker.stop()
