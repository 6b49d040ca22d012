"""Listing, describing, state changes and tags against moto; request counts measured at the client."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from providers import tags as tagschema
from providers.aws.provider import AwsProvider
from providers.base import InstanceState
from providers.errors import InvalidRequestError, NotFoundError
from tests.support.moto import ApiCallCounter, FaultInjector, run_instances, run_reservations


@pytest.mark.slow  # ~10 s: seeding 1,050 separate reservations is moto's cost, not the provider's
def test_listing_pages_past_a_thousand_instances_in_ceil_n_over_1000_requests(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter
) -> None:
    # moto pages DescribeInstances by reservation, not by instance: one reservation per instance makes the
    # default MaxResults=1000 produce two real pages, so the NextToken is followed for real.
    managed_ids = run_reservations(ec2, 1_050, tags={tagschema.CLI_CREATED_BY: "runctl"})

    listed = provider.list_managed()

    assert sorted(i.id for i in listed) == sorted(managed_ids)
    assert calls.count("ec2.DescribeInstances") == math.ceil(1_050 / 1_000) == 2
    assert [p["MaxResults"] for p in calls.params("ec2.DescribeInstances")] == [1_000, 1_000]
    assert "NextToken" in calls.params("ec2.DescribeInstances")[1]


def test_listing_follows_next_token_page_by_page(
    make_provider: Callable[..., AwsProvider], ec2: Any, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    # moto pages DescribeInstances by reservation: 12 one-instance reservations, 5 per page -> 3 pages.
    provider = make_provider(describe_page_size=5)
    ids = run_reservations(ec2, 12, tags={tagschema.MANAGED: "true"})

    assert sorted(i.id for i in provider.list_managed()) == sorted(ids)
    assert calls.count("ec2.DescribeInstances") == 3

    # A throttled second page is retried on its own: 3 pages + 1 retry, not a restart from page one.
    calls.reset()
    faults.throttle("ec2", "DescribeInstances", skip=1, times=1)
    assert sorted(i.id for i in provider.list_managed()) == sorted(ids)
    assert faults.count("error") == 1
    assert calls.count("ec2.DescribeInstances") == 4


def test_managed_means_any_of_the_three_tag_conventions(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter
) -> None:
    bot = run_instances(ec2, 2, tags={tagschema.MANAGED: "true", tagschema.OWNER: "U1"})
    cli_created = run_instances(ec2, 1, tags={tagschema.CLI_CREATED_BY: "runctl"})
    cli_user = run_instances(ec2, 1, tags={tagschema.CLI_USER: "bob", tagschema.PROJECT: "nlp"})
    unmanaged = run_instances(ec2, 3, tags={"team": "web"})
    not_managed_value = run_instances(ec2, 1, tags={tagschema.MANAGED: "false"})
    stopped = run_instances(ec2, 1, tags={tagschema.MANAGED: "true"})
    ec2.stop_instances(InstanceIds=stopped)
    terminated = run_instances(ec2, 1, tags={tagschema.MANAGED: "true"})
    ec2.terminate_instances(InstanceIds=terminated)

    managed = {i.id: i for i in provider.list_managed()}
    assert set(managed) == {*bot, *cli_created, *cli_user, *stopped}
    assert managed[stopped[0]].state is InstanceState.STOPPED
    assert managed[cli_user[0]].owner == "bob" and managed[cli_user[0]].project == "nlp"
    assert managed[bot[0]].owner == "U1"
    assert all(i.launch_time.tzinfo is not None and i.region == "us-east-1" for i in managed.values())
    assert calls.count("ec2.DescribeInstances") == 1

    unmanaged_running = {i.id for i in provider.list_unmanaged_running()}
    assert unmanaged_running == {*unmanaged, *not_managed_value}
    assert {i.id for i in provider.list_all()} == {*managed, *unmanaged_running}


def test_describe_and_find_by_operation(provider: AwsProvider, ec2: Any) -> None:
    [instance_id] = run_instances(ec2, 1, tags={tagschema.MANAGED: "true", tagschema.REQUEST: "op-42"})

    found = provider.describe(instance_id)
    assert found is not None and found.id == instance_id and found.operation_id == "op-42"
    assert found.availability_zone and found.private_ip
    assert provider.describe("i-0123456789abcdef0") is None
    by_operation = provider.find_by_operation("op-42")
    assert by_operation is not None and by_operation.id == instance_id
    assert provider.find_by_operation("op-unknown") is None
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert provider.find_by_operation("op-42") is None  # a terminated machine is no longer "the" machine


def test_stop_start_terminate_in_one_request_each(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter
) -> None:
    ids = run_instances(ec2, 30, tags={tagschema.MANAGED: "true"})

    stopped = provider.stop([*ids, ids[0]])  # a repeated id is sent once
    assert set(stopped) == set(ids)
    assert set(stopped.values()) <= {InstanceState.STOPPING, InstanceState.STOPPED}
    started = provider.start(ids)
    assert set(started.values()) <= {InstanceState.STARTING, InstanceState.RUNNING}
    terminated = provider.terminate(ids)
    assert set(terminated.values()) <= {InstanceState.TERMINATING, InstanceState.TERMINATED}
    assert [calls.count(op) for op in ("StopInstances", "StartInstances", "TerminateInstances")] == [1, 1, 1]
    assert provider.stop([]) == {} and calls.count("StopInstances") == 1


def test_unknown_instance_fails_at_once_with_a_clear_message(
    provider: AwsProvider, calls: ApiCallCounter
) -> None:
    with pytest.raises(NotFoundError) as caught:
        provider.stop(["i-0123456789abcdef0"])

    message = str(caught.value)
    assert "i-0123456789abcdef0" in message and "does not exist" in message
    assert caught.value.code == "InvalidInstanceID.NotFound"
    assert caught.value.operation == "ec2:StopInstances"
    assert calls.count("ec2.StopInstances") == 1  # not retried


def test_set_and_remove_tags_in_batches(provider: AwsProvider, ec2: Any, calls: ApiCallCounter) -> None:
    ids = run_instances(ec2, 3, tags={tagschema.MANAGED: "true"})

    provider.set_tags(ids, {tagschema.PROTECTED: "true", tagschema.KEEP_UNTIL: "2026-05-01T00:00:00Z"})
    protected = {i.id: i.tags for i in provider.list_managed()}
    assert all(tagschema.protection_tag(t) == tagschema.PROTECTED for t in protected.values())

    provider.remove_tags(ids[:2], [tagschema.PROTECTED])
    after = {i.id: i.tags for i in provider.list_managed()}
    assert [tagschema.protection_tag(after[i]) for i in ids] == [None, None, tagschema.PROTECTED]
    assert after[ids[0]][tagschema.KEEP_UNTIL] == "2026-05-01T00:00:00Z"
    assert calls.count("CreateTags") == 1 and calls.count("DeleteTags") == 1

    with pytest.raises(InvalidRequestError, match="aws: prefix"):
        provider.set_tags(ids, {"aws:cloudformation": "x"})
    assert calls.count("CreateTags") == 1


def test_describe_many_is_one_request_and_skips_unknown_ids(
    provider: AwsProvider, ec2: Any, calls: ApiCallCounter
) -> None:
    ids = run_instances(ec2, 3, tags={tagschema.MANAGED: "true"})
    ec2.stop_instances(InstanceIds=[ids[0]])
    calls.reset()
    found = provider.describe_many([*ids, "i-0123456789abcdef0", ids[1]])
    assert set(found) == set(ids)
    assert found[ids[0]].state in (InstanceState.STOPPING, InstanceState.STOPPED)
    assert calls.count("ec2.DescribeInstances") == 1
    assert provider.describe_many([]) == {}
