"""Start-up of the ``fleetwise`` command as a user runs it: whole processes, interpreter start included.

Times ``fleetwise --help`` and ``fleetwise plan`` (the defaults) as subprocesses of the installed console script,
one warm-up run each (the file cache) and then ``--runs`` timed runs; prints the median, min and max wall time
against the goals of issue 16 (``--help`` < 0.5 s, ``plan`` < 3 s). The machine's load average is printed with
them: on a shared machine the figures move with it.

Usage: python benchmarks/startup.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [("fleetwise --help", ["--help"], 0.5), ("fleetwise plan", ["plan"], 3.0)]


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of the command (after one untimed run); any failure stops the benchmark."""
    env = {**os.environ, "COLUMNS": "100"}
    times = []
    for k in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"startup: {' '.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        if k:
            times.append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    exe = shutil.which("fleetwise")
    if exe is None:
        sys.exit("startup: the fleetwise console script is not on PATH (pip install -e .)")
    rows = []
    for label, argv, goal in COMMANDS:
        times = wall_times([exe, *argv], args.runs)
        median = statistics.median(times)
        rows.append({"command": label, "runs": len(times), "median_s": round(median, 3), "min_s": round(min(times), 3),
                     "max_s": round(max(times), 3), "goal_s": goal, "meets_goal": median < goal})
    out = {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2), "commands": rows}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{'command':<18} {'median':>8} {'min':>7} {'max':>7} {'goal':>6}  met")
        for r in rows:
            print(f"{r['command']:<18} {r['median_s']:>7.2f}s {r['min_s']:>6.2f}s {r['max_s']:>6.2f}s "
                  f"{r['goal_s']:>5.1f}s  {'yes' if r['meets_goal'] else 'NO'}")
        print(f"{args.runs} runs each after one warm-up; load average {out['load_average_1min']:g} on "
              f"{out['cpus']} CPUs")
    return 0 if all(r["meets_goal"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
