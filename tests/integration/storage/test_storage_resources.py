"""ResourceRepository: reconcile upserts, state history, closing what the cloud forgot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from providers.base import Instance, InstanceState, Lifecycle
from providers.tags import MANAGED, OWNER
from storage.repositories import MISSING_REASON_CODE, Repositories, TransitionRecord

Factory = Callable[..., Instance]
At = Callable[[float], datetime]


def test_first_sight_inserts_the_row_and_a_transition_from_nothing(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    spot = make_instance(
        "i-aaa",
        lifecycle=Lifecycle.SPOT,
        operation_id="op1",
        owner="U7",
        project="nlp",
        instance_type="p3.2xlarge",
    )
    records = repos.resources.upsert_from_cloud([spot], seen_at=at(0), hourly_prices={"i-aaa": 0.92})

    # First seen running: it has been running (and billing) since the cloud's launch time, not since now.
    assert spot.launch_time < at(0)
    assert records == [
        TransitionRecord(
            resource_id="i-aaa",
            from_state=None,
            to_state=InstanceState.RUNNING,
            at=spot.launch_time,
            lifecycle=Lifecycle.SPOT,
            hourly_usd=0.92,
        )
    ]
    assert records[0].first_sight
    row = repos.resources.get("i-aaa")
    assert row is not None
    assert (row.provider, row.region, row.instance_type) == ("aws", "eu-west-1", "p3.2xlarge")
    assert (row.lifecycle, row.state, row.owner, row.project) == ("spot", "running", "U7", "nlp")
    assert row.name == "runctl-U7-nlp--aaa"
    assert row.operation_id == "op1"
    assert row.tags == dict(spot.tags)
    assert row.managed is True
    assert (row.first_seen, row.last_seen, row.closed_at) == (at(0), at(0), None)
    assert row.launch_time == spot.launch_time


def test_unchanged_state_writes_no_transition_but_refreshes_the_row(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(0))
    retagged = make_instance("i-aaa", owner="U9", project="speech")
    assert repos.resources.upsert_from_cloud([retagged], seen_at=at(5)) == []

    row = repos.resources.get("i-aaa")
    assert row is not None
    assert (row.owner, row.project, row.first_seen, row.last_seen) == ("U9", "speech", at(0), at(5))
    assert len(repos.resources.transitions(["i-aaa"])) == 1


def test_each_state_change_is_recorded_with_its_reason_and_price(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud(
        [make_instance("i-aaa", InstanceState.STARTING, launch_time=at(0))], seen_at=at(0)
    )
    repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(2), hourly_prices={"i-aaa": 1.006})
    stopped = make_instance("i-aaa", InstanceState.STOPPED, reason_code="Client.UserInitiatedShutdown")
    records = repos.resources.upsert_from_cloud([stopped], seen_at=at(60), hourly_prices={"i-aaa": 1.006})

    assert [(r.from_state, r.to_state, r.reason_code) for r in records] == [
        (InstanceState.RUNNING, InstanceState.STOPPED, "Client.UserInitiatedShutdown")
    ]
    history = repos.resources.transitions(["i-aaa"])
    assert [(r.from_state, r.to_state, r.at, r.hourly_usd) for r in history] == [
        (None, InstanceState.STARTING, at(0), None),
        (InstanceState.STARTING, InstanceState.RUNNING, at(2), 1.006),
        (InstanceState.RUNNING, InstanceState.STOPPED, at(60), 1.006),
    ]


def test_an_older_listing_arriving_late_does_not_roll_state_back(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-aaa", InstanceState.STOPPED)], seen_at=at(10))
    assert repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(5)) == []
    row = repos.resources.get("i-aaa")
    assert row is not None
    assert (row.state, row.last_seen) == ("stopped", at(10))


def test_many_instances_in_one_call_and_duplicates_count_once(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    fleet = [make_instance(f"i-{n:04d}") for n in range(600)]  # more than one IN-list chunk
    fleet.append(make_instance("i-0001", InstanceState.STOPPED))  # the later entry for an id wins
    records = repos.resources.upsert_from_cloud(fleet, seen_at=at(0))
    assert len(records) == 600
    assert len(repos.resources.list_open()) == 600
    row = repos.resources.get("i-0001")
    assert row is not None and row.state == "stopped"


def test_close_missing_terminates_what_the_cloud_no_longer_returns(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud(
        [make_instance("i-keep"), make_instance("i-gone"), make_instance("i-dead", InstanceState.TERMINATED)],
        seen_at=at(0),
    )
    records = repos.resources.close_missing(["i-keep"], at(10))

    assert [(r.resource_id, r.from_state, r.to_state, r.reason_code) for r in records] == [
        ("i-gone", InstanceState.RUNNING, InstanceState.TERMINATED, MISSING_REASON_CODE)
    ]
    gone, dead = repos.resources.get("i-gone"), repos.resources.get("i-dead")
    assert gone is not None and dead is not None
    assert (gone.state, gone.closed_at) == ("terminated", at(10))
    assert dead.closed_at == at(0)  # seen terminated: closed then, and not again by close_missing
    assert len(repos.resources.transitions(["i-dead"])) == 1
    assert [row.id for row in repos.resources.list_open()] == ["i-keep"]
    assert repos.resources.close_missing(["i-keep"], at(20)) == []


def test_close_missing_spares_rows_written_after_the_listing(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-new")], seen_at=at(10))  # e.g. a launch just finished
    assert repos.resources.close_missing([], at(10)) == []
    assert repos.resources.close_missing([], at(5)) == []
    assert [row.id for row in repos.resources.list_open()] == ["i-new"]


def test_close_missing_only_touches_the_given_provider_and_region(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    repos.resources.upsert_from_cloud(
        [make_instance("i-eu", region="eu-west-1"), make_instance("i-us", region="us-east-1")], seen_at=at(0)
    )
    closed = repos.resources.close_missing([], at(10), provider="aws", region="us-east-1")
    assert [r.resource_id for r in closed] == ["i-us"]
    assert repos.resources.close_missing([], at(10), provider="gcp") == []
    assert [row.id for row in repos.resources.list_open()] == ["i-eu"]


def test_a_closed_row_that_reappears_is_reopened(repos: Repositories, make_instance: Factory, at: At) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(0))
    repos.resources.close_missing([], at(1))
    records = repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(2))
    assert [(r.from_state, r.to_state) for r in records] == [
        (InstanceState.TERMINATED, InstanceState.RUNNING)
    ]
    row = repos.resources.get("i-aaa")
    assert row is not None and row.closed_at is None


def test_list_open_filters_by_owner_and_project(repos: Repositories, make_instance: Factory, at: At) -> None:
    hour = make_instance("i-a").launch_time
    repos.resources.upsert_from_cloud(
        [
            make_instance("i-b", owner="U1", project="nlp", launch_time=hour),
            make_instance("i-a", owner="U1", project="vision", launch_time=hour),
            make_instance("i-c", owner="U2", project="nlp", launch_time=at(-300)),
        ],
        seen_at=at(0),
    )
    assert [r.id for r in repos.resources.list_open()] == ["i-c", "i-a", "i-b"]  # by launch time, then id
    assert [r.id for r in repos.resources.list_open(owner="U1")] == ["i-a", "i-b"]
    assert [r.id for r in repos.resources.list_open(project="nlp")] == ["i-c", "i-b"]
    assert [r.id for r in repos.resources.list_open(owner="U2", project="nlp")] == ["i-c"]


def test_unmanaged_and_cli_tagged_machines_keep_their_tags(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    cli = Instance(
        id="i-cli",
        instance_type="t3.micro",
        state=InstanceState.RUNNING,
        lifecycle=Lifecycle.ON_DEMAND,
        launch_time=at(-10),
        tags={"CreatedBy": "runctl", "runctl:user": "alice"},
        region="eu-west-1",
    )
    bare = make_instance("i-bare", managed=False, owner=None, project=None)
    repos.resources.upsert_from_cloud([cli, bare], seen_at=at(0))
    cli_row, bare_row = repos.resources.get("i-cli"), repos.resources.get("i-bare")
    assert cli_row is not None and bare_row is not None
    assert (cli_row.managed, cli_row.owner, cli_row.project) == (True, "alice", None)
    assert (bare_row.managed, bare_row.owner) == (False, None)
    assert MANAGED not in bare_row.tags and OWNER not in bare_row.tags


def test_transitions_window_and_the_state_in_force_when_it_opens(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    for minutes, state in [
        (0, InstanceState.STARTING),
        (5, InstanceState.RUNNING),
        (50, InstanceState.STOPPED),
    ]:
        repos.resources.upsert_from_cloud(
            [make_instance("i-a", state, launch_time=at(0)), make_instance("i-b", state, launch_time=at(0))],
            seen_at=at(minutes),
        )
    repos.resources.upsert_from_cloud([make_instance("i-c", launch_time=at(70))], seen_at=at(70))

    window = repos.resources.transitions(since=at(10), until=at(60))
    assert [(r.resource_id, r.to_state) for r in window] == [
        ("i-a", InstanceState.STOPPED),
        ("i-b", InstanceState.STOPPED),
    ]
    with_prior = repos.resources.transitions(["i-a", "i-c"], since=at(10), until=at(80), include_prior=True)
    assert [(r.resource_id, r.at) for r in with_prior] == [("i-a", at(5)), ("i-a", at(50)), ("i-c", at(70))]
    assert repos.resources.transitions([]) == []
    assert len(repos.resources.transitions(until=at(5))) == 2


def test_first_sight_of_a_stopped_machine_is_dated_when_seen(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    """A stopped machine's launch time is its last start, so it says nothing about when it stopped."""
    (record,) = repos.resources.upsert_from_cloud(
        [make_instance("i-s", InstanceState.STOPPED)], seen_at=at(0)
    )
    assert record.at == at(0)


def test_link_operation(repos: Repositories, make_instance: Factory, at: At) -> None:
    repos.resources.upsert_from_cloud([make_instance("i-aaa")], seen_at=at(0))
    assert repos.resources.link_operation("i-aaa", "op42") is True
    assert repos.resources.link_operation("i-missing", "op42") is False
    row = repos.resources.get("i-aaa")
    assert row is not None and row.operation_id == "op42"
    # A later sighting without the request tag keeps the link.
    repos.resources.upsert_from_cloud([make_instance("i-aaa", InstanceState.STOPPED)], seen_at=at(1))
    row = repos.resources.get("i-aaa")
    assert row is not None and row.operation_id == "op42"


def test_a_large_listing_mixing_new_known_and_changed_rows_across_chunks(
    repos: Repositories, make_instance: Factory, at: At
) -> None:
    """Rows are written in chunks of plain statements: every chunk boundary must behave like the one call."""
    first = [make_instance(f"i-{n:04d}", owner="U1") for n in range(0, 1200, 2)]  # every even id
    repos.resources.upsert_from_cloud(first, seen_at=at(0))
    repos.resources.link_operation("i-0002", "op-linked")
    repos.resources.upsert_from_cloud([make_instance("i-0004", InstanceState.STOPPED)], seen_at=at(30))

    second = [
        make_instance(
            f"i-{n:04d}",
            InstanceState.STOPPED if n % 3 == 0 else InstanceState.RUNNING,
            owner="U2",
            operation_id=f"op-{n}",
        )
        for n in range(1200)
    ]
    records = repos.resources.upsert_from_cloud(second, seen_at=at(10), hourly_prices={"i-0003": 0.5})

    new = {f"i-{n:04d}" for n in range(1, 1200, 2)}
    stopped_known = {f"i-{n:04d}" for n in range(0, 1200, 6)} - {"i-0004"}  # i-0004 was seen later
    assert {r.resource_id for r in records if r.first_sight} == new
    assert {r.resource_id for r in records if not r.first_sight} == stopped_known
    assert all(r.from_state is InstanceState.RUNNING for r in records if not r.first_sight)
    assert next(r for r in records if r.resource_id == "i-0003").hourly_usd == 0.5
    assert len(repos.resources.list_open()) == 1200

    kept, linked, later = (repos.resources.get(i) for i in ("i-0000", "i-0002", "i-0004"))
    assert kept is not None and (kept.owner, kept.state, kept.operation_id) == ("U2", "stopped", "op-0")
    assert (kept.first_seen, kept.last_seen) == (at(0), at(10))
    assert linked is not None and linked.operation_id == "op-linked"  # an existing link is kept
    assert later is not None and (later.state, later.owner, later.last_seen) == ("stopped", "U1", at(30))
    assert len(repos.resources.transitions()) == 600 + 1 + len(new) + len(stopped_known)
