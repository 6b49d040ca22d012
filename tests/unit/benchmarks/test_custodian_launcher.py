"""The launcher reports the tool's own peak RSS, not the memory of the process that started it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_custodian import LAUNCHER

ALLOCATE_64_MB = "b = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"


def _launch(tmp_path: Path, code: str) -> dict[str, float]:
    result = tmp_path / "run.json"
    subprocess.run(
        [sys.executable, "-I", "-S", str(LAUNCHER), str(result), sys.executable, "-I", "-S", "-c", code],
        check=True,
        timeout=60,
    )
    measured: dict[str, float] = json.loads(result.read_text(encoding="utf-8"))
    return measured


def test_the_child_peak_is_measured(tmp_path: Path) -> None:
    measured = _launch(tmp_path, ALLOCATE_64_MB)
    assert measured["returncode"] == 0
    assert 64 * 1024 <= measured["maxrss_kb"] < 160 * 1024
    assert measured["wall_s"] > 0


def test_a_large_parent_does_not_leak_into_the_figure(tmp_path: Path) -> None:
    ballast = bytearray(256 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    measured = _launch(tmp_path, "pass")
    assert measured["maxrss_kb"] < 64 * 1024
    assert len(ballast) == 256 * 1024 * 1024


def test_the_exit_code_is_reported(tmp_path: Path) -> None:
    assert _launch(tmp_path, "raise SystemExit(3)")["returncode"] == 3
