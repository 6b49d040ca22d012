"""Run one command as a child and report that child's own wall time and peak RSS, as JSON to a file.

Why a launcher: when a process calls exec, Linux keeps the high-water RSS of the memory it had before
(`signal->maxrss`), and a child spawned straight from the benchmark starts as a copy, or a vfork share, of
the benchmark's memory: hundreds of MB after seeding 10,000 machines. Its `ru_maxrss` would then report
the benchmark, not the tool. Spawned from this small interpreter instead (run it with `-I -S`), the tool
starts from about 10 MB, below any tool's own peak.

Usage: `python -I -S launcher.py RESULT_JSON COMMAND [ARG ...]`. The command inherits this process's
environment, working directory and standard streams. Standard library only, so `-S` is enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: launcher.py RESULT_JSON COMMAND [ARG ...]\n")
        return 2
    result_path, command = argv[1], argv[2:]
    began = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    with open(result_path, "w", encoding="utf-8") as result:
        json.dump({"returncode": child.returncode, "wall_s": wall, "maxrss_kb": usage.ru_maxrss}, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
