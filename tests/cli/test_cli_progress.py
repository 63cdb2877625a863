"""Progress on stderr when it is not a terminal (:mod:`fleetwise.cli.progress`): a plain line every
``FLEETWISE_PROGRESS_EVERY_S`` seconds from simulate, compare, calibrate and optimize, none with ``--quiet``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from fleetwise.cli.progress import EVERY_S_ENV, every_s, progress
from fleetwise.errors import ConfigError

ELAPSED = r", \d+ s elapsed$"


@pytest.fixture
def fast_ticks(monkeypatch):
    """A line every 10 ms, so that a second of work prints many."""
    monkeypatch.setenv(EVERY_S_ENV, "0.01")


def _matching(err: str, pattern: str) -> list[str]:
    return [line for line in err.splitlines() if re.fullmatch(pattern, line)]


def test_lines_while_working_then_the_total(fast_ticks, capsys):
    with progress("demo", "working", total=10, unit="steps") as p:
        for i in range(1, 11):
            p.update(i, note=f"cost {1 / i:.2f}")
            time.sleep(0.02)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3
    assert all(re.fullmatch(r"demo: working: \d+% \(\d+/10 steps\), cost \d\.\d\d" + ELAPSED, x) for x in lines), lines
    assert lines[-1].startswith("demo: working: 100% (10/10 steps), cost 0.10, ")


def test_work_without_a_total_says_it_is_alive(fast_ticks, capsys):
    with progress("demo", "solving"):
        time.sleep(0.1)  # no update at all: one solver call
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch("demo: solving" + ELAPSED, x) for x in lines), lines


def test_short_work_and_quiet_print_nothing(monkeypatch, capsys):
    with progress("demo", "quick", total=1) as p:  # the default interval: short work is silent
        p.update(1)
    monkeypatch.setenv(EVERY_S_ENV, "0.01")
    with progress("demo", "quiet", total=1, quiet=True) as p:
        time.sleep(0.1)
        p.update(1)
    assert capsys.readouterr().err == ""


def test_a_failure_ends_the_lines_without_a_total(fast_ticks, capsys):
    with pytest.raises(RuntimeError), progress("demo", "failing", total=4) as p:
        p.update(1)
        time.sleep(0.05)
        raise RuntimeError
    assert "25% (1/4)" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf"])
def test_a_bad_interval_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(EVERY_S_ENV, value)
    with pytest.raises(ConfigError, match=rf"{EVERY_S_ENV}=.*must be a number of seconds > 0"):
        every_s()


def test_a_bad_interval_is_refused_before_any_work(cli, user_error, monkeypatch):
    monkeypatch.setenv(EVERY_S_ENV, "often")
    user_error(cli("simulate", "--trace", "missing.csv"), EVERY_S_ENV, "'often'")  # before the trace is read
    assert "missing.csv" in cli("simulate", "--trace", "missing.csv", "--quiet").err  # --quiet needs no interval


def test_simulate_piped_reports_progress_and_quiet_silences_it(fleetwise_exe, tmp_path):
    """The console script with stderr a pipe: progress lines between the set-up lines and the JSON result."""
    env = {**os.environ, EVERY_S_ENV: "0.05", "NO_COLOR": "1"}
    env.pop("FLEETWISE_CATALOG", None)
    argv = [fleetwise_exe, "simulate", "--time-compress", "4", "--json"]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["requests"] > 0
    lines = _matching(proc.stderr, r"simulate: simulating static-peak: \d+% \([\d,]+/[\d,]+ requests\)" + ELAPSED)
    assert lines, proc.stderr
    quiet = subprocess.run([*argv, "--quiet"], check=False, capture_output=True, text=True, timeout=300, env=env,
                           cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "simulate: " not in quiet.stderr and quiet.stderr.startswith("fleetwise: ")
    assert json.loads(quiet.stdout) == json.loads(proc.stdout)


def test_compare_names_each_strategy_in_turn(cli, fast_ticks):
    res = cli("compare", "--time-compress", "8", "--strategies", "static-peak,reactive", "--json")
    assert res.code == 0, res.err
    lines = _matching(res.err, r"compare: simulating ([a-z-]+) \(([12])/2\): \d+% \([\d,]+/[\d,]+ requests\)" + ELAPSED)
    seen = [re.match(r"compare: simulating ([a-z-]+) \(([12])/2\)", x).groups() for x in lines]
    assert ("static-peak", "1") in seen and ("reactive", "2") in seen
    assert "compare: " not in cli("compare", "--time-compress", "8", "--strategies", "static-peak", "--json",
                                  "-q").err


@pytest.fixture
def two_points(tmp_path, measured_rows, write_csv):
    rows = [r for r in measured_rows if r["mode"] == "offline" and r["metric"] == "output_throughput"
            and r["model"] == "llama-3.1-8b"][:2]
    return write_csv(tmp_path / "points.csv", rows)


def test_calibrate_reports_evaluations(cli, fast_ticks, two_points):
    res = cli("calibrate", two_points, "--max-evals", "8", "-o", "p.yaml")
    assert res.code == 0, res.err
    assert _matching(res.err, r"calibrate: fitting: \d+% \(\d/8 evals\), cost [\d.]+" + ELAPSED), res.err
    res = cli("calibrate", two_points, "--max-evals", "8", "-o", "p.yaml", "--quiet")
    assert res.code == 0 and "calibrate: " not in res.err


def test_optimize_reports_each_stage(cli, fast_ticks, tmp_path):
    from fleetwise.traffic import SyntheticSpec, synthetic_series
    from fleetwise.traffic.write import write_series_csv

    path = tmp_path / "series.csv"
    write_series_csv(synthetic_series(SyntheticSpec(days=2, period_s=3600, base_rps=20), seed=1), path)
    argv = ("optimize", "--series", path, "--horizon", "1d", "--freq", "1h", "--cloud", "aws", "--json")
    res = cli(*argv)
    assert res.code == 0, res.err
    assert _matching(res.err, "optimize: planning replica configurations and offers" + ELAPSED), res.err
    assert "optimize: " not in cli(*argv, "--quiet").err
