"""E-mails made from event messages: readable subjects, no header injection from a reviewer's name, and a message
that cannot be read as an event still becomes an e-mail (it must never block the ones after it)."""

from __future__ import annotations

import json

from hebbian_mirror.streams.eventdb import Message
from hebbian_mirror.streams.mail import EmailSettings, EmailSink


def message(kind: str, **data) -> Message:
    event = {"id": "e1", "label": "pistol", "stream": "door", "start": 1.0, "end": None, "top_score": 0.9}
    return Message(1, f"e1-{kind}-1", "e1", kind, json.dumps({"type": f"alarm.{kind}", "data": event | data}))


def test_subjects_say_what_where_and_the_verdict_without_letting_a_name_add_headers():
    sink = EmailSink(EmailSettings("smtp://127.0.0.1:2525", ("owner@shop.example",), "cams@shop.example"))
    assert sink.compose(message("new"))["Subject"] == "ALARM: pistol on door"
    review = {"state": "false_alarm", "by": "guard\r\nBcc: thief@example.com\u2028X", "at": 2.0, "note": "a phone"}
    mail = sink.compose(message("review", review=review))
    assert mail["Subject"].startswith("Alarm reviewed: pistol on door — a false alarm by guard")
    assert mail["Bcc"] is None and "\n" not in mail["Subject"]
    assert "note: a phone" in mail.get_body(("plain",)).get_content()
    assert mail["Message-ID"] == "<e1-review-1@hebbian-mirror>"


def test_a_message_that_is_no_event_still_becomes_an_email():
    sink = EmailSink(EmailSettings("smtp://127.0.0.1:2525", ("owner@shop.example",)))
    mail = sink.compose(Message(7, "m7", "e7", "new", "not json at all"))
    assert mail["Subject"] == "Hebbian Mirror event" and "not json at all" in mail.get_content()
