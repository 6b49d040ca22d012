"""Operator commands on the fleet, run from a shell: `resources list`, `cleanup plan`, `cleanup apply`.

They use the same services and safety rules as Slack, against whatever endpoint the boto3 chain (or
`AWS_ENDPOINT_URL`) gives, and write nothing to Slack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TextIO

from bot.core.durations import parse_duration
from bot.services.ports import Blocks, MessageRef


class ConsoleNotifier:
    """Messages for an operator's terminal: the text line of each message, on stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._count = 0

    def _next(self, channel: str) -> MessageRef:
        self._count += 1
        return MessageRef(channel, f"{self._count}.000000")

    def post(
        self, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> MessageRef:
        self._stream.write(f"[{channel}] {text}\n")
        return self._next(channel)

    def update(self, ref: MessageRef, text: str, blocks: Blocks | None = None) -> None:
        self._stream.write(f"[{ref.channel} updated] {text}\n")

    def dm(self, user: str, text: str, blocks: Blocks | None = None) -> MessageRef:
        self._stream.write(f"[@{user}] {text}\n")
        return self._next(user)

    def ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None:
        self._stream.write(f"[{channel} to @{user}] {text}\n")

    def upload(
        self,
        channel: str,
        filename: str,
        content: bytes,
        *,
        title: str,
        alt_text: str,
        comment: str = "",
        thread_ts: str | None = None,
    ) -> None:
        self._stream.write(f"[{channel}] file {filename} ({len(content)} bytes): {title}\n")

    def user_timezone(self, user: str) -> str | None:
        return None


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _services() -> Any:
    from bot.cli import _settings_or_exit
    from bot.runtime import ensure_migrated
    from bot.wiring import build_services
    from storage.engine import make_engine

    settings = _settings_or_exit()
    problem = ensure_migrated(settings)
    if problem:
        sys.stderr.write(f"runctl-bot: {problem}\n")
        raise SystemExit(2)
    engine = make_engine(settings.database_url)
    return build_services(settings, engine=engine, notifier=ConsoleNotifier())


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def cmd_resources_list(args: argparse.Namespace) -> int:
    services = _services()
    provider = services.deps.provider
    instances = provider.list_managed()
    if args.all:
        instances += provider.list_unmanaged_running()
    hourly = services.prices.hourly_by_instance(instances)
    now = services.deps.clock.now()
    records = [
        {
            "id": i.id,
            "type": i.instance_type,
            "state": i.state.value,
            "lifecycle": i.lifecycle.value,
            "managed": i.managed,
            "owner": i.owner,
            "project": i.project,
            "launch_time": i.launch_time.isoformat(),
            "age_hours": round((now - i.launch_time).total_seconds() / 3600, 2),
            "hourly_usd": hourly.get(i.id),
        }
        for i in instances
    ]
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        rows = [
            [
                r["id"],
                r["type"],
                r["state"],
                r["lifecycle"],
                "yes" if r["managed"] else "no",
                r["owner"] or "-",
                r["project"] or "-",
                f"{r['age_hours']}h",
                f"${r['hourly_usd']:.3f}/h" if r["hourly_usd"] is not None else "?",
            ]
            for r in records
        ]
        print(
            _table(rows, ["ID", "TYPE", "STATE", "LIFECYCLE", "MANAGED", "OWNER", "PROJECT", "AGE", "PRICE"])
        )
    services.shutdown()
    return 0


def _plan_options(args: argparse.Namespace) -> Any:
    from bot.services.cleanup import PlanOptions

    return PlanOptions(
        window=args.window,
        min_age=args.min_age,
        cpu_threshold=args.cpu_threshold,
        statistic=args.statistic,
        period_seconds=args.period,
        min_coverage=args.min_coverage,
    )


def _plan_records(plan: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": item.instance.id,
            "type": item.instance.instance_type,
            "owner": item.instance.owner,
            "project": item.instance.project,
            "idle": item.in_plan,
            "rule": item.verdict.rule.value if item.verdict.rule else None,
            "reason": item.idle.reason if item.in_plan and item.idle else item.verdict.reason,
            "hourly_usd": item.hourly_usd,
            "evidence": dict(item.idle.evidence()) if item.idle else {},
        }
        for item in plan.items
    ]


def _print_plan(plan: Any, fmt: str) -> None:
    if fmt == "ids":
        for item in plan.idle:
            print(item.instance.id)
        return
    records = _plan_records(plan)
    if fmt == "json":
        print(
            json.dumps(
                {"fleet_size": plan.fleet_size, "candidates": plan.candidates, "instances": records},
                indent=2,
                default=str,
            )
        )
        return
    rows = [
        [r["id"], r["type"], "IDLE" if r["idle"] else "skip", r["owner"] or "-", r["reason"]] for r in records
    ]
    print(_table(rows, ["ID", "TYPE", "VERDICT", "OWNER", "EVIDENCE / REASON"]))
    print(
        f"\n{len(plan.idle)} idle of {plan.fleet_size} managed machine(s); "
        f"${plan.idle_hourly_usd:.2f}/h could be saved."
    )


def cmd_cleanup_plan(args: argparse.Namespace) -> int:
    services = _services()
    plan = services.cleanup.plan(_plan_options(args))
    _print_plan(plan, args.format)
    services.shutdown()
    return 0


def cmd_cleanup_apply(args: argparse.Namespace) -> int:
    if not args.yes:
        sys.stderr.write(
            "cleanup apply stops machines: run `runctl-bot cleanup plan` first, then add --yes\n"
        )
        return 2
    services = _services()
    actor = services.deps.roles.actor(args.operator)
    plan, result = services.cleanup.apply(actor, _plan_options(args))
    for verdict in result.batch.verdicts:
        mark = "stopped" if verdict.instance_id in result.stopped else "skipped"
        print(f"{mark:8} {verdict.instance_id}  {verdict.reason}")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    print(
        f"operation {result.operation_id}: stopped {len(result.stopped)} of {len(plan.idle)} idle machine(s)"
    )
    services.shutdown()
    return 1 if result.error else 0


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=_duration, help="idle window (default RUNCTL_IDLE_WINDOW, 60m)")
    p.add_argument("--min-age", type=_duration, help="ignore younger machines (default 2h)")
    p.add_argument("--cpu-threshold", type=float, help="percent (default 5)")
    p.add_argument("--statistic", choices=("max", "mean"), help="default max")
    p.add_argument("--period", type=int, help="CloudWatch period in seconds (default 300)")
    p.add_argument("--min-coverage", type=float, help="share of expected datapoints required (default 0.8)")
    p.add_argument("--format", choices=("table", "json", "ids"), default="table")


def add_fleet_commands(sub: Any) -> None:
    resources = sub.add_parser("resources", help="list the fleet").add_subparsers(dest="resources_command")
    p = resources.add_parser("list", help="managed machines (and with --all, unmanaged running ones)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_resources_list)

    cleanup = sub.add_parser("cleanup", help="idle-machine cleanup").add_subparsers(dest="cleanup_command")
    p = cleanup.add_parser("plan", help="what the safety rules find idle, with the evidence")
    _plan_arguments(p)
    p.set_defaults(func=cmd_cleanup_plan)
    p = cleanup.add_parser("apply", help="stop what a fresh plan finds idle (still bound by every rule)")
    _plan_arguments(p)
    p.add_argument("--yes", action="store_true", help="really stop the machines")
    p.add_argument("--operator", default="operator-cli", help="name recorded in the audit log")
    p.set_defaults(func=cmd_cleanup_apply)
