"""`bot.core` stays pure: importing any of it pulls in no Slack, AWS or database library."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import bot.core

FORBIDDEN = ("slack_sdk", "slack_bolt", "boto3", "botocore", "sqlmodel", "sqlalchemy")
REPO = Path(__file__).resolve().parents[3]
CORE = Path(bot.core.__file__).parent


def _core_modules() -> list[str]:
    return sorted(f"bot.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)]))


def test_the_core_package_has_the_expected_modules() -> None:
    names = set(_core_modules())
    for expected in ("clock", "policy", "quiet_hours", "idle", "safety", "cost", "approvals", "reminders"):
        assert f"bot.core.{expected}" in names


def test_importing_every_core_module_loads_no_infrastructure_library() -> None:
    modules = _core_modules()
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert set(modules) <= set(loaded)
    leaked = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert leaked == []


def test_no_core_source_names_an_infrastructure_library() -> None:
    """Belt and braces: a lazy import inside a function would escape the runtime check above."""
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_rules_never_read_the_wall_clock() -> None:
    """Only `SystemClock` may call `datetime.now`; every rule takes `now` as an argument."""
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        if path.name == "clock.py":
            continue
        source = path.read_text(encoding="utf-8")
        for needle in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today("):
            if needle in source:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
