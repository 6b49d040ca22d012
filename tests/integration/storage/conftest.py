"""Storage tests run every repository on a migrated SQLite file and, marked `postgres`, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from providers.base import Instance, InstanceState, Lifecycle
from providers.tags import MANAGED, NAME, OWNER, PROJECT, REQUEST
from tests.support.databases import (  # noqa: F401  (fixtures)
    database_url,
    db_engine,
    empty_database_url,
    postgres_database_url,
    repos,
    skip_unless_postgres,
    sqlite_database_url,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def pytest_runtest_setup(item: pytest.Item) -> None:
    skip_unless_postgres(item)


@pytest.fixture
def at() -> Callable[[float], datetime]:
    """Minutes after a fixed Monday 09:00 UTC: tests move time by arguments, never by sleeping."""
    return lambda minutes: T0 + timedelta(minutes=minutes)


def _make_instance(
    instance_id: str,
    state: InstanceState = InstanceState.RUNNING,
    *,
    owner: str | None = "U1",
    project: str | None = "vision",
    lifecycle: Lifecycle = Lifecycle.ON_DEMAND,
    instance_type: str = "g5.xlarge",
    operation_id: str | None = None,
    managed: bool = True,
    launch_time: datetime = T0 - timedelta(hours=1),
    region: str = "eu-west-1",
    reason_code: str | None = None,
) -> Instance:
    tags = {NAME: f"runctl-{owner}-{project}-{instance_id[-4:]}"}
    if managed:
        tags[MANAGED] = "true"
    if owner:
        tags[OWNER] = owner
    if project:
        tags[PROJECT] = project
    if operation_id:
        tags[REQUEST] = operation_id
    return Instance(
        id=instance_id,
        instance_type=instance_type,
        state=state,
        lifecycle=lifecycle,
        launch_time=launch_time,
        tags=tags,
        region=region,
        state_reason_code=reason_code,
    )


InstanceFactory = Callable[..., Instance]


@pytest.fixture
def make_instance() -> InstanceFactory:
    """Build a provider `Instance` the way the AWS provider would return a managed machine."""
    return _make_instance
