"""What keeps a 10,000-machine listing small: one page alive at a time, compact instances, a cut EC2 model."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from providers import tags
from providers.aws.calls import AwsCaller
from providers.aws.clients import EC2_OPERATIONS, trim_service_model, trimmed_session
from providers.aws.ec2 import parse_instance
from providers.base import Instance, InstanceState, Lifecycle, UtilisationSeries
from providers.retry import RetryPolicy


class _Page(dict[str, Any]):
    """A dict that a weak reference can follow, to see when an answer is freed."""


def _raw(instance_id: str, owner: str) -> dict[str, Any]:
    return {
        "InstanceId": instance_id,
        "InstanceType": "g5.xlarge",
        "State": {"Name": "running"},
        "LaunchTime": datetime(2025, 3, 3, 8, 0, tzinfo=UTC),
        "Placement": {"AvailabilityZone": "eu-west-1a"},
        # Built at run time, as the XML parser builds them: equal strings, distinct objects.
        "Tags": [
            {"Key": "".join(["runctl:", "owner"]), "Value": "".join([owner[:2], owner[2:]])},
            {"Key": "".join(["runctl:", "managed"]), "Value": "".join(["tr", "ue"])},
        ],
    }


def test_parsed_pages_drop_each_answer_before_asking_for_the_next() -> None:
    alive: list[weakref.ref[_Page]] = []
    seen_alive_at_request: list[int] = []

    def fetch(**kwargs: Any) -> Mapping[str, Any]:
        gc.collect()
        seen_alive_at_request.append(sum(1 for ref in alive if ref() is not None))
        number = int(kwargs.get("NextToken", "0"))
        page = _Page(Items=list(range(number * 3, number * 3 + 3)))
        if number < 3:
            page["NextToken"] = str(number + 1)
        alive.append(weakref.ref(page))
        return page

    caller = AwsCaller(RetryPolicy(max_attempts=1))
    parsed: Iterator[list[int]] = caller.parsed_pages(
        "test:List", fetch, {}, lambda page: list(page["Items"])
    )
    assert [item for batch in parsed for item in batch] == list(range(12))
    assert seen_alive_at_request == [0, 0, 0, 0]  # no raw answer outlives its parse


def test_pages_still_hand_out_whole_answers() -> None:
    answers: Iterator[dict[str, Any]] = iter([{"Items": [1], "NextToken": "t"}, {"Items": [2]}])
    caller = AwsCaller(RetryPolicy(max_attempts=1))
    pages = list(caller.pages("test:List", lambda **_: next(answers), {}))
    assert [dict(p) for p in pages] == [{"Items": [1], "NextToken": "t"}, {"Items": [2]}]


def test_instances_are_slotted_and_share_repeated_strings() -> None:
    first = parse_instance(_raw("i-1", "U0OWNER"), "eu-west-1")
    second = parse_instance(_raw("i-2", "U0OWNER"), "eu-west-1")
    assert not hasattr(first, "__dict__")
    assert first.owner == "U0OWNER" and first.managed
    assert first.tags[tags.OWNER] is second.tags[tags.OWNER]
    assert next(iter(first.tags)) is next(iter(second.tags))
    assert first.availability_zone is second.availability_zone
    series = UtilisationSeries("i-1", "cpu", (), (), 12)
    assert not hasattr(series, "__dict__")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Service initiated (2026-11-29 14:02:11 GMT)", datetime(2026, 11, 29, 14, 2, 11, tzinfo=UTC)),
        ("User initiated (2025-03-03 08:00:00 UTC)", datetime(2025, 3, 3, 8, 0, tzinfo=UTC)),
        ("Service initiated", None),
        ("User initiated (2026-13-40 99:00:00 GMT)", None),
        ("", None),
        (None, None),
    ],
)
def test_the_state_change_time_is_read_from_the_transition_reason(
    reason: str | None, expected: datetime | None
) -> None:
    raw = {**_raw("i-1", "U0OWNER"), "StateTransitionReason": reason}
    assert parse_instance(raw, "eu-west-1").state_changed_at == expected


def test_slotted_instances_still_copy_with_replace() -> None:
    from dataclasses import replace

    inst = Instance("i-1", "t3.micro", InstanceState.RUNNING, Lifecycle.ON_DEMAND, datetime.now(UTC))
    stopped = replace(inst, state=InstanceState.STOPPED)
    assert (stopped.id, stopped.state, inst.state) == ("i-1", InstanceState.STOPPED, InstanceState.RUNNING)


def _model() -> dict[str, Any]:
    return {
        "metadata": {"serviceId": "Toy"},
        "operations": {
            "Keep": {"input": {"shape": "KeepIn"}, "output": {"shape": "KeepOut"}},
            "Drop": {"input": {"shape": "DropIn"}, "errors": [{"shape": "DropError"}]},
        },
        "shapes": {
            "KeepIn": {"type": "structure", "members": {"Ids": {"shape": "IdList"}}},
            "IdList": {"type": "list", "member": {"shape": "Id"}},
            "Id": {"type": "string"},
            "KeepOut": {"type": "structure", "members": {"Tags": {"shape": "TagMap"}}},
            "TagMap": {"type": "map", "key": {"shape": "Id"}, "value": {"shape": "Value"}},
            "Value": {"type": "string"},
            "DropIn": {"type": "structure", "members": {"Other": {"shape": "Other"}}},
            "Other": {"type": "string"},
            "DropError": {"type": "structure", "members": {}},
        },
    }


def test_trim_keeps_the_operations_and_every_shape_they_reach() -> None:
    model = _model()
    trim_service_model(model, ["Keep"])
    assert list(model["operations"]) == ["Keep"]
    assert set(model["shapes"]) == {"KeepIn", "IdList", "Id", "KeepOut", "TagMap", "Value"}
    trim_service_model(model, ["Keep"])  # a cached model is cut again on every load: nothing changes
    assert set(model["shapes"]) == {"KeepIn", "IdList", "Id", "KeepOut", "TagMap", "Value"}


def test_trim_refuses_an_operation_the_model_lacks() -> None:
    with pytest.raises(ValueError, match="Toy model has no Missing"):
        trim_service_model(_model(), ["Keep", "Missing"])


def test_the_provider_session_builds_an_ec2_client_with_only_the_operations_it_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent/runctl-tests/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-tests/credentials",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = trimmed_session(None, "eu-west-1")
    ec2 = session.client("ec2", endpoint_url="http://127.0.0.1:9")  # never called
    assert set(ec2.meta.service_model.operation_names) == EC2_OPERATIONS
    assert hasattr(ec2, "describe_instances") and not hasattr(ec2, "describe_volumes")
    # Other services keep their whole model.
    cloudwatch = session.client("cloudwatch", endpoint_url="http://127.0.0.1:9")
    assert "PutMetricData" in cloudwatch.meta.service_model.operation_names
