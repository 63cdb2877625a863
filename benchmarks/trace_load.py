"""How fast and how lean ``load_trace()`` reads a big request trace: wall time and peak RAM for 10M requests.

Generates an Azure-format CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``, timestamps such as
``2023-11-16 18:15:46.6805900``, sorted, spanning 7 days; lognormal token counts, median 1,000 input and
200 output tokens) with ``--rows`` rows into a temporary directory (removed afterwards unless ``--keep``),
vectorised with NumPy one chunk of 1M rows at a time. Then it loads the file with
``fleetwise.traffic.load_trace(path)`` in a fresh interpreter (``python -c ...``), so the peak resident set
size belongs to the load alone. Peak RSS is ``VmHWM`` from ``/proc/self/status`` where it exists (Linux), else
``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux ``ru_maxrss`` keeps the high-water mark of the process that
forked the child (here the generator, several hundred MB) across ``exec``, while ``VmHWM`` starts afresh with
the new interpreter (``ru_maxrss`` is still in the ``--json`` output). The table also gives the interpreter's
peak RSS right after ``import fleetwise.traffic`` (the baseline the load adds to), the RSS still held once
the load has returned, and the size of the trace arrays themselves.

``--bad-fraction F`` replaces a fraction F of the rows with bad ones (half with a negative token count, half
with an unparsable timestamp) and passes ``max_bad_rows`` so the load still succeeds: compare the load time
with a clean run to see what the bad-row accounting costs.

Checks the goal (from the issue): a 10M-request CSV loads in <= 30 s and <= 2 GB RAM (peak RSS <= 2048 MB).

Anchor, same file, same run, each in its own fresh interpreter with the import outside the timing:
``pandas.read_csv(path, parse_dates=["TIMESTAMP"])`` (the timestamps parsed, as load_trace parses them) and
plain ``pandas.read_csv(path)`` (timestamps left as strings). Goal: load_trace no slower than the first.

Usage: python benchmarks/trace_load.py [--rows 10000000] [--bad-fraction 0] [--keep] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_ROWS = 10_000_000
GOAL_SECONDS = 30.0
GOAL_MB = 2048.0
CHUNK = 1_000_000
SPAN_DAYS = 7
START = "2023-11-16T18:15:46"  # first request of the Azure LLM conversation trace (2023)
HEADER = b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
TICKS_PER_S = 10_000_000  # Azure timestamps carry 7 decimals: 100 ns ticks
BYTES_PER_ROW = 40  # rough size of one line, for the free-space check

# Runs in a fresh interpreter: prints one JSON line with the load's figures.
CHILD = r"""
import json, resource, sys, time
scale = 1.0 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KB on Linux, bytes on macOS

def status_kb(key):
    try:
        with open("/proc/self/status") as fh:
            return float(next(l.split()[1] for l in fh if l.startswith(key + ":")))
    except (OSError, StopIteration):
        return None

def peak_kb():
    # Linux carries the parent's high-water mark into ru_maxrss across fork+exec, so prefer VmHWM (this
    # process image's own peak) when /proc has it.
    hwm = status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

def current_kb():
    kb = status_kb("VmRSS")
    return kb if kb is not None else float("nan")

t0 = time.perf_counter()
from fleetwise.traffic import load_trace
import_s = time.perf_counter() - t0
base_kb = peak_kb()
kwargs = json.loads(sys.argv[2])
t0 = time.perf_counter()
trace = load_trace(sys.argv[1], **kwargs)
load_s = time.perf_counter() - t0
arrays = trace.arrival_s.nbytes + trace.input_tokens.nbytes + trace.output_tokens.nbytes
print(json.dumps({
    "import_s": import_s, "load_s": load_s, "baseline_peak_kb": base_kb, "peak_kb": peak_kb(),
    "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
    "after_load_kb": current_kb(), "arrays_bytes": arrays, "rows_loaded": len(trace),
    "rows_read": trace.report.rows, "bad_rows": trace.report.bad_rows, "first_bad": list(trace.report.first_bad),
    "sorted_rows": trace.report.sorted_rows, "span_s": trace.duration_s, "epoch": trace.epoch,
    "mean_input": float(trace.input_tokens.mean()), "mean_output": float(trace.output_tokens.mean()),
}))
"""


PANDAS_CHILD = r"""
import json, sys, time
import pandas as pd
t0 = time.perf_counter()
pd.read_csv(sys.argv[1], parse_dates=["TIMESTAMP"])
dates_s = time.perf_counter() - t0
t0 = time.perf_counter()
pd.read_csv(sys.argv[1])
plain_s = time.perf_counter() - t0
print(json.dumps({"pandas_parse_dates_s": dates_s, "pandas_plain_s": plain_s, "pandas": pd.__version__}))
"""


def measure_pandas(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PANDAS_CHILD, str(path)], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"pandas_error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _put_digits(m, col: int, value, width: int) -> None:
    """Write ``value`` (int array) as ``width`` zero-padded ASCII digits into columns col..col+width-1."""
    import numpy as np

    v = value.copy()
    for k in range(width - 1, -1, -1):
        m[:, col + k] = 48 + (v % 10).astype(np.uint8)
        v //= 10


def _timestamps(ticks, day0):
    """'YYYY-MM-DD HH:MM:SS.fffffff' (27 bytes) for 100 ns ticks counted from midnight of ``day0``."""
    import numpy as np

    n = len(ticks)
    per_day = 86_400 * TICKS_PER_S
    day = ticks // per_day
    rem = ticks - day * per_day
    days = np.arange(int(day.min()), int(day.max()) + 1)
    dates = np.datetime_as_string(day0 + days.astype("timedelta64[D]"), unit="D").astype("S10")
    m = np.empty((n, 27), dtype=np.uint8)
    m[:, :10] = dates.view(np.uint8).reshape(-1, 10)[day - days[0]]
    secs, frac = rem // TICKS_PER_S, rem % TICKS_PER_S
    m[:, 10], m[:, 13], m[:, 16], m[:, 19] = ord(" "), ord(":"), ord(":"), ord(".")
    _put_digits(m, 11, secs // 3600, 2)
    _put_digits(m, 14, secs // 60 % 60, 2)
    _put_digits(m, 17, secs % 60, 2)
    _put_digits(m, 20, frac, 7)
    return m.view("S27").ravel()


def generate(path: Path, rows: int, bad_fraction: float, seed: int) -> int:
    """Write the CSV; returns the number of bad rows injected."""
    import numpy as np

    rng = np.random.default_rng(seed)
    day0 = np.datetime64(START[:10], "D")
    offset = int((np.datetime64(START, "s") - day0.astype("datetime64[s]")).astype(np.int64)) * TICKS_PER_S
    step = SPAN_DAYS * 86_400 * TICKS_PER_S / rows  # mean gap in ticks; row i lands in [i, i+1) * step: sorted
    bad_total = 0
    with open(path, "wb") as fh:
        fh.write(HEADER)
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            ticks = offset + ((np.arange(lo, lo + n) + rng.random(n)) * step).astype(np.int64)
            ts = _timestamps(ticks, day0)
            ctx = np.maximum(rng.lognormal(np.log(1000), 1.0, n), 1).astype(np.int64)
            gen = np.maximum(rng.lognormal(np.log(200), 0.8, n), 1).astype(np.int64)
            if bad_fraction > 0:
                bad = np.flatnonzero(rng.random(n) < bad_fraction)
                bad_total += bad.size
                bad_tok, bad_time = bad[::2], bad[1::2]
                ctx[bad_tok] = -ctx[bad_tok]  # negative token count
                ts[bad_time] = b"not-a-time"
            line = np.char.add(np.char.add(np.char.add(np.char.add(ts, b","), ctx.astype("S")), b","),
                               gen.astype("S"))
            fh.write(b"\n".join(line.tolist()))
            fh.write(b"\n")
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return bad_total


def measure(path: Path, kwargs: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(kwargs)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"trace_load: the load failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=GOAL_ROWS, help=f"requests in the CSV (default {GOAL_ROWS:,})")
    parser.add_argument("--bad-fraction", type=float, default=0.0,
                        help="fraction of rows made bad (negative tokens / garbage time), 0 to 0.5 (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated trace (default 0)")
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV (its path is printed)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if not 0 <= args.bad_fraction <= 0.5:
        parser.error("--bad-fraction must lie in [0, 0.5]")
    try:
        import numpy  # noqa: F401

        import fleetwise.traffic  # noqa: F401
    except ImportError as exc:
        sys.exit(f"trace_load: {exc}; install the project first (pip install -e .); skipping")

    workdir = Path(tempfile.mkdtemp(prefix="fleetwise-trace-load-", dir=args.dir))
    need = args.rows * BYTES_PER_ROW
    free = shutil.disk_usage(workdir).free
    if free < 1.2 * need:
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(f"trace_load: needs about {need / 2**20:,.0f} MB of disk in {workdir.parent}, "
                 f"only {free / 2**20:,.0f} MB free; skipping (use --dir or fewer --rows)")
    path = workdir / "azure_trace.csv"
    try:
        print(f"generating {args.rows:,} rows into {path} ", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        injected = generate(path, args.rows, args.bad_fraction, args.seed)
        gen_s = time.perf_counter() - t0
        size = path.stat().st_size
        kwargs = {"max_bad_rows": min(0.99, 1.5 * args.bad_fraction + 0.001)} if args.bad_fraction > 0 else {}
        extra = f", max_bad_rows={kwargs['max_bad_rows']:g}" if kwargs else ""
        print(f"loading it in a fresh interpreter: load_trace(path{extra})", file=sys.stderr, flush=True)
        r = measure(path, kwargs)
        if not injected:
            print("the anchor: pandas.read_csv on the same file, fresh interpreter", file=sys.stderr, flush=True)
            r |= measure_pandas(path)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    peak_mb, base_mb = r["peak_kb"] / 1024, r["baseline_peak_kb"] / 1024
    ok_time, ok_mem = r["load_s"] <= GOAL_SECONDS, peak_mb <= GOAL_MB
    ok_rows = r["rows_loaded"] == args.rows - injected and r["bad_rows"] == injected
    verdict = "PASS" if ok_time and ok_mem and ok_rows else "FAIL"
    result = {
        "rows": args.rows, "bad_rows_injected": injected, "file_bytes": size, "generate_s": gen_s,
        "load_kwargs": kwargs, **r, "peak_mb": peak_mb, "baseline_peak_mb": base_mb,
        "rows_per_s": r["rows_read"] / r["load_s"], "mb_per_s": size / 2**20 / r["load_s"],
        "goal": {"rows": GOAL_ROWS, "load_s": GOAL_SECONDS, "peak_mb": GOAL_MB, "time_ok": ok_time,
                 "memory_ok": ok_mem, "rows_ok": ok_rows, "verdict": verdict},
        "kept": str(path) if args.keep else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    print(f"load_trace() on a generated Azure-format CSV, fresh interpreter, {os.cpu_count()} CPU cores "
          f"(goal: {GOAL_ROWS:,} requests in <= {GOAL_SECONDS:g} s and <= {GOAL_MB:,.0f} MB peak RSS)\n")
    print("| rows | bad rows | file size | generate | load | rows/s | MB/s | peak RSS | baseline RSS after import "
          "| load adds | RSS after load | trace arrays |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {r['rows_loaded']:,} of {args.rows:,} | {r['bad_rows']:,} (injected {injected:,}) | {size / 2**20:,.0f} MB "
          f"| {gen_s:.1f} s | {r['load_s']:.1f} s | {result['rows_per_s']:,.0f} | {result['mb_per_s']:,.0f} "
          f"| {peak_mb:,.0f} MB | {base_mb:,.0f} MB | {peak_mb - base_mb:,.0f} MB | {r['after_load_kb'] / 1024:,.0f} MB "
          f"| {r['arrays_bytes'] / 2**20:,.0f} MB |")
    days = r["span_s"] / 86_400
    print(f"\nLoaded span {days:.2f} days, mean tokens {r['mean_input']:,.0f} in / {r['mean_output']:,.0f} out, "
          f"timestamps {'re-sorted' if r['sorted_rows'] else 'already sorted'}; import fleetwise.traffic took "
          f"{r['import_s']:.2f} s (not in the load time).")
    if "pandas_parse_dates_s" in r:
        print(f"Anchor, same file: pandas {r['pandas']} read_csv with the timestamps parsed "
              f"{r['pandas_parse_dates_s']:.1f} s (load_trace {r['load_s'] / r['pandas_parse_dates_s']:.2f}x its "
              f"time), plain read_csv (timestamps as strings, nothing checked) {r['pandas_plain_s']:.1f} s.")
    if r["first_bad"]:
        print("First bad rows reported: " + "; ".join(r["first_bad"]))
    if args.keep:
        print(f"Kept the CSV: {path}")
    note = "" if args.rows == GOAL_ROWS else f" (the goal is stated for {GOAL_ROWS:,} rows; this run used {args.rows:,})"
    rows_note = "" if ok_rows else "; rows loaded / bad rows counted do not match what was generated"
    print(f"\nGoal: load <= {GOAL_SECONDS:g} s and peak <= {GOAL_MB:,.0f} MB: {verdict} "
          f"({r['load_s']:.1f} s, {peak_mb:,.0f} MB){note}{rows_note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
