"""``WebClient.files_upload_v2`` end to end: upload URL, raw POST of the bytes, completion and share."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.standin import SlackStandIn
from tests.support.slack import BOB, FLEET, NOT_JOINED, running_standin, standin_web_client

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with running_standin(rate_limit_per_channel=None) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return standin_web_client(standin)


def download(url: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_upload_v2_stores_bytes_and_shares_a_file_message(standin: SlackStandIn, client: WebClient) -> None:
    response = client.files_upload_v2(
        channel=FLEET.id,
        content=PNG,
        filename="weekly-cost.png",
        title="Weekly cost",
        alt_txt="Cost per day, last 7 days",
        initial_comment="Weekly report",
    )

    file = response["file"]
    assert file["id"].startswith("F")
    assert (file["name"], file["title"], file["mimetype"], file["filetype"]) == (
        "weekly-cost.png",
        "Weekly cost",
        "image/png",
        "png",
    )
    assert file["size"] == len(PNG)
    assert file["channels"] == [FLEET.id]
    [stored] = standin.files()
    assert stored.content == PNG and stored.completed and stored.alt_txt == "Cost per day, last 7 days"

    [message] = standin.messages(FLEET.id)
    assert message.text == "Weekly report" and message.files == (file["id"],)
    assert file["shares"]["public"][FLEET.id][0]["ts"] == message.ts
    rendered = standin.message_json(message)
    assert rendered["upload"] is True and rendered["files"][0]["id"] == file["id"]

    methods = [c.method for c in standin.calls()]
    assert methods == ["files.getUploadURLExternal", "files.upload", "files.completeUploadExternal"]

    assert download(file["url_private"], standin.bot_token) == (200, PNG)
    assert download(file["url_private"], None)[0] == 403


def test_upload_into_a_thread_and_a_dm(standin: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=FLEET.id, text="training job 42")["ts"]
    client.files_upload_v2(
        channel=FLEET.id, content="epoch,loss\n1,0.9\n", filename="loss.csv", thread_ts=parent
    )
    dm = client.conversations_open(users=BOB.id)["channel"]["id"]
    client.files_upload_v2(channel=dm, content=b"log", filename="train.log")

    reply = standin.messages(FLEET.id, thread_ts=parent)[-1]
    assert reply.is_reply and reply.files
    assert standin.file(reply.files[0]) is not None
    [dm_message] = standin.dms(BOB.id)
    dm_file = standin.file(dm_message.files[0])
    assert dm_file is not None and dm_file.content == b"log"


def test_upload_without_channel_stays_private(standin: SlackStandIn, client: WebClient) -> None:
    file = client.files_upload_v2(content=b"private", filename="notes.txt")["file"]

    assert file["channels"] == [] and file["is_public"] is False
    assert standin.messages() == []


@pytest.mark.parametrize(
    ("channel", "error"), [("C0NOSUCH99", "channel_not_found"), (NOT_JOINED.id, "not_in_channel")]
)
def test_sharing_into_a_bad_channel_fails_at_completion(
    standin: SlackStandIn, client: WebClient, channel: str, error: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.files_upload_v2(channel=channel, content=b"x", filename="x.txt")

    assert excinfo.value.response["error"] == error
    assert standin.messages() == []


def test_completion_errors(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.files_completeUploadExternal(files=[{"id": "F0NOSUCH99", "title": "x"}])
    assert excinfo.value.response["error"] == "file_not_found"

    issued = client.files_getUploadURLExternal(filename="late.txt", length=4)
    with pytest.raises(SlackApiError) as excinfo:
        client.files_completeUploadExternal(files=[{"id": issued["file_id"]}])
    assert excinfo.value.response["error"] == "file_not_found"

    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("files.getUploadURLExternal", params={"filename": "x.txt"})
    assert excinfo.value.response["error"] == "invalid_arguments"


def test_upload_url_checks_length_and_is_single_use(standin: SlackStandIn, client: WebClient) -> None:
    issued = client.files_getUploadURLExternal(filename="four.bin", length=4)
    url = issued["upload_url"]
    assert url.startswith(f"{standin.url}/upload/v1/")

    def post(data: bytes) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=data, method="POST"), timeout=5
            ) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    assert post(b"12345") == (400, "expected 4 bytes, received 5")
    assert post(b"1234") == (200, "OK - 4")
    assert post(b"1234")[0] == 404
    done = client.files_completeUploadExternal(files=[{"id": issued["file_id"], "title": "Four"}])
    assert done["files"][0]["title"] == "Four"
    completed = standin.file(issued["file_id"])
    assert completed is not None and completed.completed and completed.content == b"1234"
