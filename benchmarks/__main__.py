"""Run the benchmarks and write their results: `python -m benchmarks [--quick] [--only NAME ...]`.

A benchmark is any module `benchmarks/bench_<name>.py` with a function `run(quick: bool) -> dict`. The
dict must be JSON-serialisable; its optional `"title"` names the section and its optional `"markdown"`
is the section body (tables, notes) in the markdown report, else the JSON is shown. A benchmark raises
when a measurement is invalid (errors, work not done), so no figure is ever written for a broken run.

Full runs update `benchmarks/results/latest.json` and `latest.md`; `--quick` runs (smaller sizes, for
checking that a benchmark works) update `quick.json` and `quick.md` instead, so they never replace the
committed full figures. Each file keeps the newest entry per benchmark, so `--only` refreshes one section
and leaves the others as they were, each stamped with when, where and how it ran.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from benchmarks.common import RESULTS_DIR, describe_machine, machine, now_iso

PACKAGE = "benchmarks"
PREFIX = "bench_"


def discover() -> dict[str, str]:
    """Benchmark name (module name without the prefix) → module name, in alphabetical order."""
    here = Path(__file__).resolve().parent
    found = {
        info.name.removeprefix(PREFIX): f"{PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules([str(here)])
        if info.name.startswith(PREFIX)
    }
    return dict(sorted(found.items()))


def _runner(module_name: str) -> Callable[[bool], dict[str, Any]]:
    module = importlib.import_module(module_name)
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"{module_name} has no run(quick: bool) -> dict")
    return cast(Callable[[bool], dict[str, Any]], run)


def _command(name: str, quick: bool) -> str:
    return f"python -m benchmarks --only {name}" + (" --quick" if quick else "")


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"benchmarks": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"benchmarks": {}}
    return data if isinstance(data.get("benchmarks"), dict) else {"benchmarks": {}}


def render_markdown(data: dict[str, Any], *, quick: bool) -> str:
    heading = "Benchmark results" + (" (quick mode: smaller sizes, not for comparison)" if quick else "")
    lines = [f"# {heading}", "", f"Written by `python -m benchmarks`; last updated {data['updated']}.", ""]
    for name, entry in data["benchmarks"].items():
        result = entry["result"]
        lines += [
            f"## {result.get('title') or name}",
            "",
            f"Ran {entry['ran_at']} in {entry['seconds']:.0f} s on {describe_machine(entry['machine'])}.",
            f"Rerun: `{entry['command']}`.",
            "",
            result.get("markdown") or "```json\n" + json.dumps(result, indent=2) + "\n```",
            "",
        ]
    return "\n".join(lines)


def write_results(entries: dict[str, dict[str, Any]], *, quick: bool, directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stem = "quick" if quick else "latest"
    path = directory / f"{stem}.json"
    data = _load(path)
    data["benchmarks"].update(entries)
    data["benchmarks"] = dict(sorted(data["benchmarks"].items()))
    data["updated"] = now_iso()
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    (directory / f"{stem}.md").write_text(render_markdown(data, quick=quick), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; writes quick.json/quick.md")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(available) or 'none found'}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, module in available.items():
            print(f"{name}\t{module}")
        return 0
    chosen = [n.removeprefix(PREFIX) for n in (args.only or list(available))]
    unknown = [n for n in chosen if n not in available]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(available)}")

    info = machine()
    print(f"machine: {describe_machine(info)}", flush=True)
    entries: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for name in chosen:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        began = time.perf_counter()
        try:
            result = _runner(available[name])(args.quick)
            json.dumps(result)  # refuse now, not halfway through writing the file
        except Exception:
            traceback.print_exc()
            print(f"== {name}: FAILED, no results written for it", flush=True)
            failed.append(name)
            continue
        seconds = time.perf_counter() - began
        entries[name] = {
            "ran_at": now_iso(),
            "seconds": round(seconds, 1),
            "quick": args.quick,
            "command": _command(name, args.quick),
            "machine": info,
            "result": result,
        }
        print(f"== {name}: done in {seconds:.0f} s", flush=True)
        if result.get("markdown"):
            print(result["markdown"], flush=True)
    if entries:
        path = write_results(entries, quick=args.quick)
        print(f"results: {path} and {path.with_suffix('.md')}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
