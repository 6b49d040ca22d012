"""Who may do what: roles from configuration, checked before anything runs (deny by default).

Roles nest: an admin is also an approver and a user; an approver is also a user. Workspace members in
no list may use the read-only verbs only. With a channel allow-list, commands from other channels are
refused (direct messages with the bot are always allowed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.core.commands import VERBS, Role
from bot.core.safety import Actor
from bot.core.safety import Role as SafetyRole

_ORDER = (Role.USER, Role.APPROVER, Role.ADMIN)
_LABEL = {Role.USER: "users", Role.APPROVER: "approvers", Role.ADMIN: "admins"}
_ENV = {Role.USER: "RUNCTL_USERS", Role.APPROVER: "RUNCTL_APPROVERS", Role.ADMIN: "RUNCTL_ADMINS"}


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class RoleBook:
    """The role lists of the configuration, frozen at start-up."""

    admins: frozenset[str] = frozenset()
    approvers: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        admins: Iterable[str] = (),
        approvers: Iterable[str] = (),
        users: Iterable[str] = (),
        channels: Iterable[str] = (),
    ) -> RoleBook:
        return cls(frozenset(admins), frozenset(approvers), frozenset(users), frozenset(channels))

    def role_of(self, user: str) -> Role | None:
        """The highest role a user holds, or None for a member in no list."""
        if user in self.admins:
            return Role.ADMIN
        if user in self.approvers:
            return Role.APPROVER
        if user in self.users:
            return Role.USER
        return None

    def actor(self, user: str) -> Actor:
        """The safety rules' view of a user, with every role implied by the highest one."""
        role = self.role_of(user)
        held: set[SafetyRole] = set()
        if role is not None:
            for r in _ORDER[: _ORDER.index(role) + 1]:
                held.add(SafetyRole(r.value))
        return Actor(user, frozenset(held))

    @property
    def approver_ids(self) -> frozenset[str]:
        """Everyone who may approve: approvers and admins."""
        return self.approvers | self.admins

    def check_channel(self, channel: str | None) -> AccessDecision:
        if not self.channels or channel is None or channel.startswith("D") or channel in self.channels:
            return AccessDecision(True)
        allowed = ", ".join(f"<#{c}>" for c in sorted(self.channels))
        return AccessDecision(False, f"I only take commands in {allowed} (or in a direct message with me).")

    def check_verb(
        self, user: str, verb: str, *, required: Role | None = None, what: str | None = None
    ) -> AccessDecision:
        """May `user` run `verb`? `required` overrides the verb's role (e.g. `--force` needs an admin);
        `what` names the request in a refusal when a flag raised it (`terminate --force`)."""
        spec = VERBS.get(verb)
        if spec is None:
            return AccessDecision(False, f"`{verb}` is not a verb I know. Try `/runctl help`.")
        need = required or spec.role
        if not spec.mutating and need is spec.role:
            return AccessDecision(True)
        held = self.role_of(user)
        if held is not None and held.allows(need):
            return AccessDecision(True)
        return AccessDecision(False, self._refusal(what or verb, need))

    def _refusal(self, what: str, need: Role) -> str:
        holders = sorted(self.admins) if need is Role.ADMIN else sorted(self._at_least(need))
        if not holders:
            return (
                f"Only {_LABEL[need]} may run `{what}`, and none are configured: "
                f"an operator must set `{_ENV[need]}`."
            )
        shown = ", ".join(f"<@{u}>" for u in holders[:5]) + (" …" if len(holders) > 5 else "")
        return f"Only {_LABEL[need]} may run `{what}`. Ask one of {shown}."

    def _at_least(self, need: Role) -> frozenset[str]:
        if need is Role.USER:
            return self.users | self.approvers | self.admins
        if need is Role.APPROVER:
            return self.approvers | self.admins
        return self.admins
