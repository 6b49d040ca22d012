"""A crash between the cloud call and the database write is healed by reconcile: tracked, linked, once."""

from __future__ import annotations

from bot.services.deps import new_operation_id
from bot.services.operations import OpStatus
from providers.base import LaunchSpec
from storage.models import Operation
from tests.support.harness import Bot
from tests.support.slack import BOB


def test_launch_whose_database_write_was_lost_is_linked_by_reconcile(bot: Bot) -> None:
    services = bot.application.services
    now = bot.clock.now()
    op_id = new_operation_id()
    # The operation is recorded before the cloud call, as the service does...
    bot.repos.operations.create(
        Operation(
            id=op_id,
            kind="launch",
            requester=BOB.id,
            channel=None,
            status=OpStatus.EXECUTING,
            params={"instance_type": "t3.large", "project": "nlp"},
            instance_ids=[],
            created_at=now,
            updated_at=now,
        )
    )
    # ...the cloud launches the machine, and the process dies before writing anything else.
    result = services.deps.provider.launch(
        LaunchSpec(operation_id=op_id, instance_type="t3.large", owner=BOB.id, project="nlp")
    )
    iid = result.instance.id
    assert bot.repos.resources.get(iid) is None

    first = services.tracking.reconcile()
    assert op_id in first.linked_operations
    row = bot.repos.resources.get(iid)
    assert row is not None and row.operation_id == op_id and row.owner == BOB.id
    op = bot.repos.operations.get(op_id)
    assert op is not None and op.status == OpStatus.SUCCEEDED and op.instance_ids == [iid]
    assert op.result == {"instance_id": iid, "healed_by": "reconcile"}

    # A retried launch of the same operation finds the machine instead of making a second one.
    again = services.deps.provider.launch(
        LaunchSpec(operation_id=op_id, instance_type="t3.large", owner=BOB.id, project="nlp")
    )
    assert again.instance.id == iid
    second = services.tracking.reconcile()
    assert second.linked_operations == ()
    reservations = bot.aws.client("ec2").describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 1
    assert len(bot.repos.resources.list_open()) == 1


def test_reconcile_closes_rows_the_cloud_no_longer_has(bot: Bot) -> None:
    services = bot.application.services
    from tests.support.moto import run_instances

    ids = run_instances(bot.aws.client("ec2"), 2, tags={"runctl:managed": "true", "runctl:owner": BOB.id})
    services.tracking.reconcile()
    assert len(bot.repos.resources.list_open()) == 2
    bot.aws.reset()  # the instances vanish from the cloud altogether
    bot.clock.advance(minutes=1)
    result = services.tracking.reconcile()
    assert {t.resource_id for t in result.transitions} == set(ids)
    assert bot.repos.resources.list_open() == []
