"""A webhook secret a user can make: ``hebbian-mirror new-secret`` prints one that the official Standard
Webhooks library accepts and our signer uses; a malformed one is refused with the way to make a good one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from hebbian_mirror.errors import DeliveryError
from hebbian_mirror.streams.delivery import WebhookSink, sign


def test_a_new_secret_signs_what_the_official_library_verifies(cli):
    code, out, _ = cli("new-secret")
    secret = out.strip()
    assert code == 0 and secret.startswith("whsec_") and len(secret) == len("whsec_") + 32
    assert cli("new-secret")[1].strip() != secret  # random each time
    assert cli("webhook-secret")[1].strip().startswith("whsec_")  # the earlier name still works
    body = '{"type": "event.new"}'
    when = datetime.fromtimestamp(1700000000, tz=UTC)
    assert Webhook(secret).sign("msg_1", when, body) == sign(secret, "msg_1", 1700000000, body)


def test_a_malformed_secret_says_how_to_make_one(cli, tmp_path):
    with pytest.raises(DeliveryError, match="make one with `hebbian-mirror new-secret`"):
        WebhookSink("http://127.0.0.1:9/hook", "whsec_hunter2!")
    code, out, err = cli("settings", env={"HEBBIAN_MIRROR_WEBHOOK_SECRET": "whsec_hunter2"})
    said = out + err
    assert code != 0 and "Traceback" not in said and "new-secret" in said and "hunter2" not in said
    secret = tmp_path / "secret"
    secret.write_text(cli("new-secret")[1])
    code, out, _ = cli("settings", env={"HEBBIAN_MIRROR_WEBHOOK_SECRET_FILE": str(secret)})
    assert code == 0 and '"webhook_secret": "(set)"' in out
