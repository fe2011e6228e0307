"""Who holds it, on constructed boxes: held_by, and an alarm remembering its holder."""

from __future__ import annotations

from hebbian_mirror.boxes import held_by
from hebbian_mirror.detection import Detection
from hebbian_mirror.streams.alarms import AlarmTracker
from hebbian_mirror.streams.rules import AlarmRule


def det(label: str, box: tuple[float, float, float, float], score: float = 0.9) -> Detection:
    return Detection(box, score, 0, label)


def test_constructed_boxes():
    people = [det("person", (0, 0, 100, 300)), det("person", (80, 0, 400, 300))]
    found = [
        *people,
        det("pistol", (10, 100, 40, 130)),  # inside the first person only
        det("Knife", (85, 100, 95, 120)),  # inside both: the smaller box (the closer fit) holds it
        det("pistol", (390, 100, 450, 130)),  # a sixth inside the second person: under the 20% share
        det("knife", (600, 0, 650, 40)),  # nobody near it
        det("cell phone", (10, 100, 40, 130)),  # not dangerous: no held_by at all
        det("pistol", (395, 100, 420, 130)),  # 20% of it inside the second person: enough
    ]
    assert held_by(found) == {2: 0, 3: 0, 4: None, 5: None, 7: 1}
    assert held_by(found, dangerous=["cell phone"]) == {6: 0}
    assert held_by([det("pistol", (0, 0, 10, 10))]) == {0: None}  # no person in the picture
    assert held_by([det("pistol", (5, 5, 5, 9)), people[0]]) == {0: None}  # an empty box is held by no one


def test_an_alarm_remembers_who_holds_its_object():
    tracker = AlarmTracker([AlarmRule("pistol", min_score=0.5, frames=2)], fps=10)
    person = det("person", (100, 50, 300, 450))
    transitions = []
    for n in range(4):
        pistol = det("pistol", (150 + n, 200, 190 + n, 240), 0.8 + 0.05 * n)
        transitions += tracker.update([person, pistol], n / 10, n, 1000 + n / 10)[1]
    assert [t.kind for t in transitions][:1] == ["new"]
    assert transitions[0].alarm.held_by == person.box
