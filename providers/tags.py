"""The tag schema of DESIGN §2: the cloud's tags are the source of truth for ownership and protection."""

from __future__ import annotations

import re
from collections.abc import Mapping

MANAGED = "runctl:managed"
OWNER = "runctl:owner"
PROJECT = "runctl:project"
CREATED = "runctl:created"
REQUEST = "runctl:request"
KEEP_UNTIL = "runctl:keep-until"
PROTECTED = "runctl:protected"
IMPORTANT = "runctl:important"
PERSISTENT = "runctl:persistent"
NAME = "Name"
# Tags written by the runctl CLI itself: machines it launched count as managed.
CLI_CREATED_BY = "CreatedBy"
CLI_USER = "runctl:user"

PROTECTION_TAGS: tuple[str, ...] = (PROTECTED, IMPORTANT, PERSISTENT)
KEEP_FOREVER = "never"

PROJECT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_managed(tags: Mapping[str, str]) -> bool:
    """Managed by the bot, or launched by the runctl CLI (whose users should see their machines at once)."""
    return (
        tags.get(MANAGED, "").lower() == "true"
        or tags.get(CLI_CREATED_BY, "").lower() == "runctl"
        or bool(tags.get(CLI_USER))
    )


def protection_tag(tags: Mapping[str, str]) -> str | None:
    """The first protection tag set to true, or None. Values are compared case-insensitively."""
    for key in PROTECTION_TAGS:
        if tags.get(key, "").strip().lower() == "true":
            return key
    return None


def owner_of(tags: Mapping[str, str]) -> str | None:
    return tags.get(OWNER) or tags.get(CLI_USER) or None


def is_valid_project(name: str) -> bool:
    return bool(PROJECT_RE.fullmatch(name))


def instance_name(owner: str, project: str, short_id: str) -> str:
    """`runctl-<user>-<project>-<short id>`, bounded to EC2's 256-character tag value limit."""
    return f"runctl-{owner}-{project}-{short_id}"[:256]
