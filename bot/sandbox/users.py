"""The sandbox workspace: four people, one per role the bot knows (and one with none), and one channel.

The ids look like Slack's so that everything downstream (config validation, mentions, the stand-in's
checks) treats them as real users. The time zones differ on purpose: quiet hours are per owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from bot.slack.standin import Channel, User

DemoRole = Literal["requester", "approver", "admin", "outsider"]


@dataclass(frozen=True)
class DemoPerson:
    """A demo user and what the sandbox says about them in the user switcher."""

    role: DemoRole
    user: User
    title: str
    blurb: str

    @property
    def id(self) -> str:
        return self.user.id


REQUESTER = DemoPerson(
    role="requester",
    user=User(
        id="U0SANDREQ1",
        name="riya",
        real_name="Riya Raman",
        tz="Europe/London",
        email="riya@example.test",
    ),
    title="ML engineer",
    blurb="a user: launches, trains, stops her own machines; asks for terminations",
)
APPROVER = DemoPerson(
    role="approver",
    user=User(
        id="U0SANDAPR2",
        name="amir",
        real_name="Amir Haddad",
        tz="Europe/Berlin",
        email="amir@example.test",
    ),
    title="Team lead",
    blurb="an approver: approves or denies someone else's terminate",
)
ADMIN = DemoPerson(
    role="admin",
    user=User(
        id="U0SANDADM3",
        name="grace",
        real_name="Grace Okafor",
        tz="America/New_York",
        is_admin=True,
        email="grace@example.test",
    ),
    title="Platform admin",
    blurb="an admin: cleanup runs, keep forever, force",
)
OUTSIDER = DemoPerson(
    role="outsider",
    user=User(
        id="U0SANDOUT4",
        name="olle",
        real_name="Olle Berg",
        tz="Asia/Tokyo",
        email="olle@example.test",
    ),
    title="Data analyst",
    blurb="no role: may look (list, status, help), may not change anything",
)

DEMO_PEOPLE: tuple[DemoPerson, ...] = (REQUESTER, APPROVER, ADMIN, OUTSIDER)
DEMO_USERS: tuple[User, ...] = tuple(p.user for p in DEMO_PEOPLE)

DEMO_CHANNEL = Channel(
    id="C0SANDFLT1",
    name="ml-fleet",
    created=1_767_225_600,  # 2026-01-01
    topic="Training machines: ask runctl with /runctl",
    purpose="Where the team runs its training fleet from chat",
)


def person(role: DemoRole, people: Iterable[DemoPerson] = DEMO_PEOPLE) -> DemoPerson:
    for candidate in people:
        if candidate.role == role:
            return candidate
    raise LookupError(f"no demo person with role {role!r}")


def role_env(people: Iterable[DemoPerson] = DEMO_PEOPLE) -> dict[str, str]:
    """``RUNCTL_USERS`` / ``RUNCTL_APPROVERS`` / ``RUNCTL_ADMINS`` for the sandbox's bot.

    Roles nest in the bot (an admin is also an approver and a user), so each person is listed once,
    under their highest role; the outsider is in no list on purpose.
    """
    lists: dict[str, list[str]] = {"RUNCTL_USERS": [], "RUNCTL_APPROVERS": [], "RUNCTL_ADMINS": []}
    target: Mapping[DemoRole, str] = {
        "requester": "RUNCTL_USERS",
        "approver": "RUNCTL_APPROVERS",
        "admin": "RUNCTL_ADMINS",
    }
    for candidate in people:
        name = target.get(candidate.role)
        if name is not None:
            lists[name].append(candidate.id)
    return {name: ",".join(ids) for name, ids in lists.items()}
