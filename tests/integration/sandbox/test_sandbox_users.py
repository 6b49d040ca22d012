"""The demo people: one per role, and role lists the bot's configuration accepts as they are."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.core.access import RoleBook
from bot.core.commands import Role
from bot.sandbox.users import ADMIN, APPROVER, DEMO_PEOPLE, DEMO_USERS, OUTSIDER, REQUESTER, person, role_env


def test_role_env_lists_each_person_under_their_highest_role() -> None:
    assert role_env() == {
        "RUNCTL_USERS": REQUESTER.id,
        "RUNCTL_APPROVERS": APPROVER.id,
        "RUNCTL_ADMINS": ADMIN.id,
    }


def test_the_bot_reads_those_lists_and_gives_everyone_the_intended_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in role_env().items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    book = RoleBook.of(admins=settings.admins, approvers=settings.approvers, users=settings.users)
    assert book.role_of(REQUESTER.id) is Role.USER
    assert book.role_of(APPROVER.id) is Role.APPROVER
    assert book.role_of(ADMIN.id) is Role.ADMIN
    assert book.role_of(OUTSIDER.id) is None
    assert book.approver_ids == {APPROVER.id, ADMIN.id}


def test_people_are_distinct_slack_like_users_in_different_time_zones() -> None:
    assert [p.role for p in DEMO_PEOPLE] == ["requester", "approver", "admin", "outsider"]
    assert len({u.id for u in DEMO_USERS}) == len({u.name for u in DEMO_USERS}) == 4
    assert len({u.tz for u in DEMO_USERS}) == 4
    assert all(u.id.startswith("U0SAND") and len(u.id) == 10 for u in DEMO_USERS)
    assert person("approver") is APPROVER
    with pytest.raises(LookupError):
        person("owner")  # type: ignore[arg-type]
