"""Request encodings other clients use (multipart, chunked), runtime seeding and change waiting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests

from bot.slack.standin import SlackStandIn
from tests.support.slack import ALICE, FLEET, standin_web_client


def bearer(standin: SlackStandIn) -> dict[str, str]:
    return {"Authorization": f"Bearer {standin.bot_token}"}


def test_multipart_form_arguments(slack_standin: SlackStandIn) -> None:
    metadata = json.dumps({"event_type": "approval", "event_payload": {"id": "appr-1"}})
    response = requests.post(
        f"{slack_standin.api_url}chat.postMessage",
        headers=bearer(slack_standin),
        data={"channel": FLEET.id, "text": "multipart", "metadata": metadata},
        files={"unused": ("note.txt", b"ignored bytes")},
        timeout=5,
    )

    assert response.json()["ok"] is True
    [message] = slack_standin.messages(FLEET.id)
    assert message.text == "multipart"
    assert message.metadata == {"event_type": "approval", "event_payload": {"id": "appr-1"}}
    assert slack_standin.calls("chat.postMessage")[0].params["unused"] == "<13 bytes>"


def test_chunked_bodies_and_multipart_uploads(slack_standin: SlackStandIn) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"channel=" + FLEET.id.encode()
        yield b"&text=chunked"

    posted = requests.post(
        f"{slack_standin.api_url}chat.postMessage",
        headers={**bearer(slack_standin), "Content-Type": "application/x-www-form-urlencoded"},
        data=chunks(),
        timeout=5,
    )
    assert posted.json()["ok"] is True

    client = standin_web_client(slack_standin)
    issued = client.files_getUploadURLExternal(filename="chart.png", length=3)
    uploaded = requests.post(issued["upload_url"], files={"file": ("chart.png", b"PNG")}, timeout=5)
    assert (uploaded.status_code, uploaded.text) == (200, "OK - 3")
    stored = slack_standin.file(issued["file_id"])
    assert stored is not None and stored.content == b"PNG"
    missing = requests.get(
        f"{slack_standin.url}/files/{issued['file_id']}/chart.png", headers=bearer(slack_standin)
    )
    assert missing.status_code == 404  # not shared until files.completeUploadExternal


def test_runtime_seeding(slack_standin: SlackStandIn) -> None:
    slack_standin.add_user({"id": "U0ERIN0005", "name": "erin", "tz": "Australia/Sydney", "is_admin": True})
    slack_standin.add_channel({"id": "C0NEW00006", "name": "gpu-queue", "members": ["U0ERIN0005", ALICE.id]})
    client = standin_web_client(slack_standin)

    assert client.users_info(user="U0ERIN0005")["user"]["tz"] == "Australia/Sydney"
    client.chat_postEphemeral(channel="C0NEW00006", user="U0ERIN0005", text="hi erin")
    assert [e.text for e in slack_standin.ephemerals(channel="C0NEW00006")] == ["hi erin"]
    with pytest.raises(ValueError, match="start with U or W"):
        slack_standin.add_user({"id": "X1", "name": "bad"})
    with pytest.raises(KeyError):
        slack_standin.add_message("C0NOSUCH99", ALICE.id, "x")


def test_wait_for_change_wakes_on_the_next_write(slack_standin: SlackStandIn) -> None:
    since = slack_standin.version
    client = standin_web_client(slack_standin)
    poster = threading.Thread(target=lambda: client.chat_postMessage(channel=FLEET.id, text="wake up"))

    poster.start()
    newer = slack_standin.wait_for_change(since, timeout=5)
    poster.join()

    assert newer > since
    assert slack_standin.wait_for_change(slack_standin.version, timeout=0.01) == slack_standin.version
