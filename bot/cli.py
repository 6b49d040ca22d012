"""`runctl-bot`: the operator's entry point (serve, migrate, check, and the fleet commands)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot import __version__
from bot.config import ConfigError, Settings, load_settings
from bot.logs import setup_logging

log = logging.getLogger("runctl_bot")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_PROBLEMS = 2


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print("Configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(EXIT_PROBLEMS) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from storage.migrate import current_revision, downgrade, head_revision, known_revisions, upgrade

    settings = _settings_or_exit()
    target = args.to or "head"
    if target != "head" and target not in known_revisions():
        print(f"unknown revision {target!r}; this version knows {', '.join(sorted(known_revisions()))}")
        return EXIT_PROBLEMS
    if target == "head":
        upgrade(settings.database_url)
    else:
        from storage.engine import make_engine as _engine

        probe = _engine(settings.database_url)
        try:
            current = current_revision(probe)
        finally:
            probe.dispose()
        order = sorted(known_revisions())
        if current is not None and current in order and order.index(current) > order.index(target):
            downgrade(settings.database_url, target)
        else:
            upgrade(settings.database_url, target)
    from storage.engine import make_engine

    engine = make_engine(settings.database_url)
    try:
        print(f"database migrated to {current_revision(engine)} (head {head_revision()})")
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_check(_args: argparse.Namespace) -> int:
    from bot.checks import run_checks

    try:
        settings = load_settings()
    except ConfigError as exc:
        print("✗ configuration")
        for problem in exc.problems:
            print(f"  - {problem}")
        return EXIT_PROBLEMS
    report = run_checks(settings)
    for line in report.lines():
        print(line)
    return EXIT_PROBLEMS if report.problems else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.runtime import serve

    settings = _settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    return serve(settings, role=args.role)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot.sandbox.runner import run_sandbox

    setup_logging("WARNING", "text")
    return run_sandbox(port=args.port, data_dir=Path(args.data_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runctl-bot", description="Run an ML team's cloud training fleet from Slack, safely."
    )
    parser.add_argument("--version", action="version", version=f"runctl-bot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("migrate", help="upgrade the database to the latest schema (or --to a revision)")
    p.add_argument("--to", help="a revision to upgrade or downgrade to (rollback); default: the latest")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("check", help="validate configuration and reach Slack and AWS; exit 2 on any problem")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("serve", help="run the bot (HTTP, or Socket Mode when SLACK_APP_TOKEN is set)")
    p.add_argument("--role", choices=("web", "scheduler", "all"), default="all")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("sandbox", help="the whole bot on 127.0.0.1 with a local AWS and a local Slack page")
    p.add_argument("--port", type=int, default=3000, help="port of the Slack-like page (default 3000)")
    p.add_argument("--data-dir", default=".runctl-sandbox", help="where the SQLite file lives")
    p.set_defaults(func=cmd_sandbox)

    from bot.cli_fleet import add_fleet_commands

    add_fleet_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_PROBLEMS
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
