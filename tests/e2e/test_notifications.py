"""Notifications that carry the picture, against a real server watching a real clip: the first message of an
alarm links its snapshot (signed, expiring, usable without the API key) and holds a thumbnail; the end message
links the clip; the same reaches a real SMTP server (aiosmtpd: STARTTLS, then AUTH) as e-mails; forged and
expired links are refused (403, 410) and change nothing."""

from __future__ import annotations

import base64

import httpx

from hebbian_mirror.streams.links import Signer, link_key

from ..server_process import ServerProcess, free_port
from ..stream_peers import SECRET, WEAPONS_MODEL, SmtpServer, WebhookReceiver, alarm_clip, wait_for

KEY = "notify-key-0123456789"


def test_alarm_messages_link_their_pictures_and_reach_the_mailbox(tmp_path):
    clip, _ = alarm_clip(tmp_path / "door.mp4", appearances=1)
    receiver, smtp = WebhookReceiver(free_port()), SmtpServer(tmp_path)
    events = tmp_path / "events"
    srv = ServerProcess(
        "--model", f"weapons={WEAPONS_MODEL}", "--workers", "0", "--api-key", KEY, "--alarm", "pistol",
        "--stream", f"door={clip}", "--events-dir", str(events), "--webhook", receiver.url,
        "--webhook-secret", SECRET, "--public-url", "http://127.0.0.1:1", "--thumbnails",
        "--smtp", smtp.url, "--smtp-ca-file", str(smtp.ca), "--email-to", "owner@shop.example",
        "--email-from", "cameras@shop.example",
        log=tmp_path / "server.log",
    )  # fmt: skip
    try:
        wait_for(lambda: receiver.of("end"))
        new, end = receiver.of("new")[0], receiver.of("end")[0]
        event_id = new["data"]["id"]
        assert new["thumbnail"].startswith("data:image/jpeg;base64,")
        assert base64.b64decode(new["thumbnail"].split(",", 1)[1])[:3] == b"\xff\xd8\xff"
        link = new["links"]["snapshot"]
        assert link.startswith(f"http://127.0.0.1:1/v1/events/{event_id}/snapshot.jpg?expires=")
        usable = link.replace("http://127.0.0.1:1", srv.url)  # the public URL is how receivers reach the server
        picture = httpx.get(usable)  # no API key
        assert picture.status_code == 200 and picture.content[:3] == b"\xff\xd8\xff"
        clip_link = end["links"]["clip"].replace("http://127.0.0.1:1", srv.url)
        answer = httpx.get(clip_link)
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
        forged = usable[:-2] + ("AA" if not usable.endswith("AA") else "BB")
        expired = Signer(link_key(events), srv.url, ttl_s=-60).link(event_id, "snapshot.jpg")
        other_file = usable.replace("snapshot.jpg", "frame.jpg")
        codes = [httpx.get(u).status_code for u in (forged, expired, other_file)]
        assert codes == [403, 410, 403]
        assert "expired" in httpx.get(expired).json()["error"]
        assert httpx.get(f"{srv.url}/v1/events/{event_id}/snapshot.jpg").status_code == 401  # neither key nor link
        assert httpx.get(f"{srv.url}/v1/events/{event_id}/snapshot.jpg", headers={"X-API-Key": KEY}).status_code == 200
        # the mailbox: the same messages, after STARTTLS and AUTH
        wait_for(lambda: len(smtp.received) >= len(receiver.received))
        assert smtp.logins and all(m["To"] == "owner@shop.example" for m in smtp.received)
        first = smtp.received[0]
        assert first["Subject"] == "ALARM: pistol on door" and first["From"] == "cameras@shop.example"
        text = first.get_body(("plain",)).get_content()
        assert link in text and "links work without a key until" in text
        pictures = [p for p in first.iter_attachments() if p.get_content_type() == "image/jpeg"]
        assert len(pictures) == 1 and pictures[0].get_content()[:3] == b"\xff\xd8\xff"
        assert any(m["Subject"].startswith("Alarm ended: pistol on door") for m in smtp.received)
        assert len({m["Message-ID"] for m in smtp.received}) == len(smtp.received)
    finally:
        assert srv.stop(), srv.log()
        receiver.close()
        smtp.close()
    assert "Traceback" not in srv.log() and " 500 " not in srv.log() and "s3cret-smtp" not in srv.log()


def test_mail_waits_out_an_outage_and_never_sends_the_password_in_clear(tmp_path):
    """The SMTP server refuses (451) for a while: the e-mail comes once it is back, once. A server that offers
    no STARTTLS never gets the password."""
    import asyncio

    from hebbian_mirror.streams.eventdb import Message
    from hebbian_mirror.streams.mail import EmailSettings, EmailSink

    smtp = SmtpServer(tmp_path)
    try:
        sink = EmailSink(EmailSettings(smtp.url, ("a@b.example",), ca_file=smtp.ca))
        body = (
            '{"type": "alarm.new", "timestamp": "t", "data": {"id": "e1", "label": "knife", "stream": "s", '
            '"start": 1.0, "end": null, "top_score": 0.9, "review": null}}'
        )
        smtp.refuse = True
        try:
            asyncio.run(sink.deliver(Message(1, "e1-new-1", "e1", "new", body)))
            raise AssertionError("a refusal must be an error: the outbox then tries again")
        except Exception as exc:
            assert "451" in str(exc)
        smtp.refuse = False
        asyncio.run(sink.deliver(Message(1, "e1-new-1", "e1", "new", body)))
        assert [m["Subject"] for m in smtp.received] == ["ALARM: knife on s"]
    finally:
        smtp.close()
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    plain = Controller(Sink(), hostname="127.0.0.1", port=free_port())  # no STARTTLS at all
    plain.start()
    try:
        sink = EmailSink(EmailSettings(f"smtp://user:pw@127.0.0.1:{plain.port}", ("a@b.example",)))
        try:
            asyncio.run(sink.deliver(Message(1, "e1-new-1", "e1", "new", body)))
            raise AssertionError("the password must not go out in clear")
        except Exception as exc:
            assert "no STARTTLS" in str(exc)
    finally:
        plain.stop()
