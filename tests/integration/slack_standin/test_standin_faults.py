"""Rate limits, injected 429/5xx, outages, dropped connections and timeouts, seen by slack_sdk."""

from __future__ import annotations

import urllib.error
from datetime import UTC, datetime

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.slack.standin import SlackStandIn
from tests.support.slack import ALICE, FLEET, OPS, retry_handlers, running_standin, standin_web_client

START = 1_705_000_000.0


class FakeClock:
    """A wall clock the test moves by hand (outage windows are read from it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def no_retries(standin: SlackStandIn) -> WebClient:
    return standin_web_client(standin, handlers=[])


def test_per_channel_rate_limit_answers_429_with_retry_after() -> None:
    with running_standin(rate_limit_per_channel=1.0, rate_limit_burst=2) as standin:
        client = no_retries(standin)
        client.chat_postMessage(channel=FLEET.id, text="1")
        client.chat_postMessage(channel=FLEET.id, text="2")

        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=FLEET.id, text="3")

        response = excinfo.value.response
        assert response.status_code == 429
        assert response["error"] == "ratelimited"
        assert response.headers["Retry-After"] == "1"
        assert client.chat_postMessage(channel=OPS.id, text="other channel")["ok"] is True
        assert [m.text for m in standin.messages(FLEET.id)] == ["1", "2"]
        assert [c.status for c in standin.calls("chat.postMessage")] == [200, 200, 429, 200]


def test_rate_limited_post_is_retried_by_the_sdk_and_stored_once() -> None:
    with running_standin(rate_limit_per_channel=1.0, rate_limit_burst=1) as standin:
        client = standin_web_client(standin)
        client.chat_postMessage(channel=FLEET.id, text="first")

        second = client.chat_postMessage(channel=FLEET.id, text="second")

        assert second["ok"] is True
        assert [m.text for m in standin.messages(FLEET.id)] == ["first", "second"]
        assert [c.status for c in standin.calls("chat.postMessage")] == [200, 429, 200]


def test_rate_limiting_can_be_disabled() -> None:
    with running_standin(rate_limit_per_channel=None) as standin:
        client = no_retries(standin)
        for i in range(20):
            client.chat_postMessage(channel=FLEET.id, text=str(i))

        assert len(standin.messages(FLEET.id)) == 20


def test_injected_429_is_retried_and_the_message_arrives_once(slack_standin: SlackStandIn) -> None:
    slack_standin.fail_next("chat.postMessage", status=429, retry_after=0)
    client = standin_web_client(slack_standin)

    client.chat_postMessage(channel=FLEET.id, text="exactly once")

    assert [m.text for m in slack_standin.messages(FLEET.id)] == ["exactly once"]
    calls = slack_standin.calls("chat.postMessage")
    assert [(c.status, c.fault) for c in calls] == [(429, "fail:429:ratelimited"), (200, None)]
    assert calls[0].params == calls[1].params == {"channel": FLEET.id, "text": "exactly once"}
    assert slack_standin.pending_faults() == 0


def test_injected_500_and_503_are_retried_by_the_server_error_handler(slack_standin: SlackStandIn) -> None:
    slack_standin.fail_next("chat.update", status=500)
    slack_standin.fail_next("chat.update", status=503)
    client = standin_web_client(slack_standin)
    ts = client.chat_postMessage(channel=FLEET.id, text="v1")["ts"]

    client.chat_update(channel=FLEET.id, ts=ts, text="v2")

    assert [c.status for c in slack_standin.calls("chat.update")] == [500, 503, 200]
    updated = slack_standin.message(FLEET.id, ts)
    assert updated is not None and updated.text == "v2"


def test_5xx_beyond_the_retry_budget_surfaces_and_applies_nothing(slack_standin: SlackStandIn) -> None:
    slack_standin.fail_next("chat.postMessage", status=503, count=3)
    client = standin_web_client(slack_standin, handlers=retry_handlers(server_error_retries=2))

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=FLEET.id, text="lost")

    assert excinfo.value.response.status_code == 503
    assert excinfo.value.response["error"] == "service_unavailable"
    assert slack_standin.messages() == []


def test_injected_slack_error_with_http_200(slack_standin: SlackStandIn) -> None:
    slack_standin.fail_next("*", status=200, error="not_in_channel")
    client = no_retries(slack_standin)

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=FLEET.id, text="x")

    assert (excinfo.value.response.status_code, excinfo.value.response["error"]) == (200, "not_in_channel")
    assert client.chat_postMessage(channel=FLEET.id, text="x")["ok"] is True


def test_two_minute_outage_by_moving_the_clock() -> None:
    clock = FakeClock(START)
    with running_standin(clock=clock) as standin:
        standin.outage(START + 10, datetime.fromtimestamp(START + 130, UTC))
        client = no_retries(standin)
        assert client.auth_test()["ok"] is True

        clock.now = START + 10
        for method in ("auth.test", "chat.postMessage"):
            with pytest.raises(SlackApiError) as excinfo:
                client.api_call(method, json={"channel": FLEET.id, "text": "during outage"})
            assert excinfo.value.response.status_code == 503

        clock.now = START + 129.9
        with pytest.raises(SlackApiError):
            client.auth_test()

        clock.now = START + 130
        assert client.chat_postMessage(channel=FLEET.id, text="after outage")["ok"] is True
        assert [m.text for m in standin.messages()] == ["after outage"]
        assert [c.fault for c in standin.calls()].count("down") == 3


def test_set_down_fails_everything_until_restored(slack_standin: SlackStandIn) -> None:
    client = no_retries(slack_standin)
    ts = client.chat_postMessage(channel=FLEET.id, text="before")["ts"]
    response_url = slack_standin.issue_response_url(channel=FLEET.id, user=ALICE.id, kind="slash_command")

    slack_standin.set_down(True, status=500)
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=FLEET.id, ts=ts, text="during")
    assert excinfo.value.response.status_code == 500
    assert WebhookClient(response_url.url).send(text="during").status_code == 500

    slack_standin.set_down(False)
    assert client.chat_update(channel=FLEET.id, ts=ts, text="after")["ok"] is True
    assert WebhookClient(response_url.url).send(text="after").status_code == 200


def test_dropped_connection_is_retried_by_the_connection_error_handler(slack_standin: SlackStandIn) -> None:
    slack_standin.drop_next("chat.postMessage")
    client = standin_web_client(slack_standin)

    client.chat_postMessage(channel=FLEET.id, text="after a reset")

    assert [m.text for m in slack_standin.messages()] == ["after a reset"]
    assert [(c.status, c.fault) for c in slack_standin.calls("chat.postMessage")] == [
        (0, "drop:not-applied"),
        (200, None),
    ]


def test_lost_answer_after_the_effect_makes_a_blind_retry_post_twice(slack_standin: SlackStandIn) -> None:
    slack_standin.drop_next("chat.postMessage", applied=True)
    client = standin_web_client(slack_standin)

    client.chat_postMessage(channel=FLEET.id, text="posted twice")

    assert [m.text for m in slack_standin.messages()] == ["posted twice", "posted twice"]


def test_delayed_answer_times_the_client_out_after_the_effect(slack_standin: SlackStandIn) -> None:
    slack_standin.delay_next("chat.postMessage", 3)
    client = standin_web_client(slack_standin, timeout=1)

    with pytest.raises((TimeoutError, urllib.error.URLError)):
        client.chat_postMessage(channel=FLEET.id, text="slow")

    assert [m.text for m in slack_standin.messages()] == ["slow"]
    assert slack_standin.calls("chat.postMessage")[0].fault == "delay:3s"


def test_fault_arguments_are_checked(slack_standin: SlackStandIn) -> None:
    with pytest.raises(ValueError, match="error name"):
        slack_standin.fail_next("chat.postMessage", status=200)
    with pytest.raises(ValueError, match="failure status"):
        slack_standin.fail_next("chat.postMessage", status=302)
    with pytest.raises(ValueError, match="end after"):
        slack_standin.outage(START, START)
    with pytest.raises(ValueError, match="timezone-aware"):
        slack_standin.outage(datetime(2024, 1, 1), datetime(2024, 1, 2))
