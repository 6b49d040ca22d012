"""Formatting shared by every message: money, ages, instance lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from bot.core.safety import format_duration
from providers.base import Instance, InstanceState, Lifecycle

STATE_ICON = {
    InstanceState.RUNNING: ":large_green_circle:",
    InstanceState.STARTING: ":large_yellow_circle:",
    InstanceState.STOPPING: ":large_orange_circle:",
    InstanceState.STOPPED: ":white_circle:",
    InstanceState.TERMINATING: ":red_circle:",
    InstanceState.TERMINATED: ":black_circle:",
    InstanceState.UNKNOWN: ":grey_question:",
}


def money(value: Decimal | float | None, *, per_hour: bool = False) -> str:
    if value is None:
        return "price unknown"
    amount = Decimal(str(value))
    text = f"${amount:,.3f}" if per_hour and amount < 1 else f"${amount:,.2f}"
    return f"{text}/h" if per_hour else text


def age(launched: datetime, now: datetime) -> str:
    return format_duration(now - launched)


def mention(user: str | None) -> str:
    return f"<@{user}>" if user else "_nobody_"


def instance_line(inst: Instance, now: datetime, *, hourly: float | None = None) -> str:
    spot = " spot" if inst.lifecycle is Lifecycle.SPOT else ""
    parts = [
        f"{STATE_ICON.get(inst.state, '')} `{inst.id}`",
        f"{inst.instance_type}{spot}",
        inst.state.value,
        f"owner {mention(inst.owner)}",
    ]
    if inst.project:
        parts.append(f"project `{inst.project}`")
    parts.append(f"age {age(inst.launch_time, now)}")
    if hourly is not None:
        parts.append(money(hourly, per_hour=True))
    return " · ".join(parts)
