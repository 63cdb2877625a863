"""Option values are checked up front, by one shared set of checks (fleetwise.cli.checks), and a failed or
interrupted run leaves none of its outputs behind (fleetwise.atomic.output_batch around every command), nor
any temporary file - on SIGTERM as on Ctrl-C.

Every case fails fast: the values that used to hang (NaN rates, huge sizes and horizons) are rejected before
any work, so a regression shows up as a timeout-free failure rather than a stuck test run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleetwise.atomic import atomic_path, output_batch, remove_leftovers, write_atomic
from fleetwise.cli.checks import check_number
from fleetwise.errors import ConfigError

PERF = ("--model", "llama-3.1-8b", "--gpu", "H100", "--precision", "fp8", "--isl", "128", "--osl", "128")
TRACE_HEADER = "timestamp,input_tokens,output_tokens"


@pytest.fixture
def trace(tmp_path) -> str:
    rows = [f"{0.5 * k:.3f},{50 + (7 * k) % 400},{10 + (3 * k) % 150}" for k in range(200)]
    (tmp_path / "trace.csv").write_text("\n".join([TRACE_HEADER, *rows]) + "\n", encoding="utf-8")
    return "trace.csv"


# ------------------------------------------------------------------------------- values that used to hang


@pytest.mark.parametrize(("argv", "needles"), [
    (("perf", *PERF, "--rate", "nan"), ("--rate", "nan")),
    (("perf", *PERF, "--rate", "1e-200"), ("--rate",)),
    (("perf", *PERF, "--batch", "100000000"), ("--batch", "1,000,000")),
    (("perf", *PERF, "--requests", "100000000"), ("--requests", "1,000,000")),
    (("perf", *PERF, "--concurrency", "100000000"), ("--concurrency",)),
    (("forecast", "--horizon", "100000d"), ("--horizon", "366 d")),
    (("forecast", "TRACE", "--freq", "5min", "--horizon", "60d"), ("--horizon", "10,000")),
    (("traffic", "summarize", "TRACE", "--profile-bin", "0.0001"), ("--profile-bin", "1 min")),
    (("simulate", "--trace", "TRACE", "--replicas", "100000000"), ("--replicas", "10,000")),
    (("simulate", "--trace", "TRACE", "--policy", "reactive", "--reserved", "100000000"), ("--reserved",)),
    (("simulate", "--trace", "TRACE", "--replicas", "1", "--time-compress", "1e-300"), ("--time-compress",)),
    (("compare", "--trace", "TRACE", "--control-interval", "0.0001s"), ("--control-interval", "500,000")),
    # bounded where the data are built (fleetwise.traffic), not by option checks
    (("traffic", "synth", "-o", "s.csv", "--bursts-per-day", "1e9"), ("bursts",)),
    (("traffic", "synth", "-o", "s.csv", "--days", "1e6"), ("bins",)),
    (("traffic", "synth", "-o", "s.csv", "--trace", "--base-rps", "1e9"), ("requests",)),
], ids=["perf-rate-nan", "perf-rate-tiny", "perf-batch", "perf-requests", "perf-concurrency", "forecast-horizon",
        "forecast-steps", "profile-bin", "simulate-replicas", "simulate-reserved", "simulate-stretched",
        "compare-control-interval", "synth-bursts", "synth-days", "synth-trace-size"])
def test_values_that_used_to_hang_fail_fast(cli, user_error, trace, argv, needles):
    res = cli(*[trace if a == "TRACE" else a for a in argv])
    user_error(res, *needles)
    assert res.code == 2
    assert not Path("s.csv").exists()


# ------------------------------------------------------------------------------------------ the messages


@pytest.mark.parametrize(("value", "bounds", "expected"), [
    (float("nan"), {"gt": 0}, "--x must be a finite positive number (got nan)"),
    (float("inf"), {}, "--x must be a finite number (got inf)"),
    (2.0, {"ge": 0, "le": 1}, "--x must be a finite number >= 0 and <= 1 (got 2): too slow"),
    (1.0, {"gt": 0, "lt": 1}, "--x must be a finite number > 0 and < 1 (got 1): too slow"),
    # the reason is given for the bound that is broken
    (0, {"ge": 1, "le": 10}, "--x must be a whole number >= 1 and <= 10 (got 0)"),
    (11, {"ge": 1, "le": 10}, "--x must be a whole number >= 1 and <= 10 (got 11): too slow"),
    (-1, {"ge": 0}, "--x must be a whole number >= 0 (got -1): too slow"),
])
def test_check_number_messages(value, bounds, expected):
    with pytest.raises(ConfigError) as info:
        check_number("--x", value, **bounds, why="too slow")
    assert str(info.value) == expected


def test_check_number_passes_good_values_and_none():
    assert check_number("--x", None, gt=0) is None
    assert check_number("--x", 0.5, ge=0, le=1) == 0.5
    assert check_number("--x", 10**400, ge=1) == 10**400  # a huge int is finite (no OverflowError)
    with pytest.raises(ConfigError, match="the SLO target must be"):
        check_number("--ttft-p95-ms", float("nan"), gt=0, what="SLO target")


def test_shared_options_share_one_check(cli, user_error, trace):
    """--rate-multiply NaN is rejected the same way by convert, simulate and compare (one shared option)."""
    lines = {user_error(cli(*argv, "--rate-multiply", "nan"), "--rate-multiply")
             for argv in (("traffic", "convert", trace, "-o", "o.csv"),
                          ("simulate", "--trace", trace, "--replicas", "1"),
                          ("compare", "--trace", trace, "--strategies", "static-peak"))}
    assert len(lines) == 1, lines


def test_plan_tp_larger_than_any_instance_says_why(cli, user_error):
    line = user_error(cli("plan", "--gpu", "h100", "--cloud", "aws", "--precision", "fp8", "--tp", "1024"),
                      "--tp", "1024")
    assert "()" not in line


# --------------------------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(("argv", "needles"), [
    (("perf", "--isl", "abc"), ("perf:", "--isl", "fleetwise perf --help")),
    (("plan", "--bogus-option"), ("plan:", "--bogus-option")),
    (("traffic", "convert"), ("traffic convert:", "file")),
    (("bogus-command",), ("bogus-command",)),
])
def test_usage_errors_are_one_line_with_exit_2(cli, user_error, argv, needles):
    res = cli(*argv)
    user_error(res, *needles)
    assert res.code == 2 and res.out == ""


def test_help_still_works(cli):
    res = cli("traffic", "convert", "--help")
    assert res.code == 0 and res.err == ""
    assert "--rate-multiply" in res.out and "Usage" in res.out


def test_bare_command_prints_help_exit_2(cli):
    res = cli()
    assert res.code == 2 and "Usage" in res.out and "Traceback" not in res.err


def test_usage_error_via_the_console_script(script, user_error):
    res = script("plan", "--top", "many")
    user_error(res, "--top")
    assert res.code == 2


# ----------------------------------------------------------------------------- interrupts and failed runs


def test_interrupt_prints_one_line_and_leaves_the_old_output(cli, monkeypatch, tmp_path):
    """Ctrl-C after the CSV is written but before the command ends: the old file stays, no temporary file."""
    from fleetwise.cli import traffic

    out = tmp_path / "s.csv"
    out.write_text("old\n", encoding="utf-8")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(traffic.console, "print", interrupt)
    res = cli("traffic", "synth", "--days", "1", "-o", str(out))
    assert res.code == 130
    assert res.err_lines == [f"fleetwise: interrupted (not written: {out})"]
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_error_after_one_output_leaves_none(cli, monkeypatch, tmp_path):
    """plan writes --csv (and says so), then fails while rendering: the CSV of the failed run is not left
    behind, and the error line says so."""
    from fleetwise.cli import plan

    def fail(*args, **kwargs):
        raise ConfigError("rendering failed")

    monkeypatch.setattr(plan, "print_json", fail)
    res = cli("plan", "--gpu", "h100", "--cloud", "aws", "--precision", "fp8", "--tp", "4", "--json",
              "--csv", "cands.csv")
    assert res.err_lines[0].startswith("wrote ") and res.err_lines[0].endswith(" to cands.csv")
    assert res.code == 2 and res.err_lines[-1] == "fleetwise: error: rendering failed (not written: cands.csv)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_output_onto_a_device_is_refused(cli, user_error, trace):
    user_error(cli("traffic", "convert", trace, "-o", "/dev/null"), "/dev/null", "regular file", "--out")


def test_output_batch_commits_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    with pytest.raises(RuntimeError), output_batch():
        write_atomic(a, "A")
        with output_batch():  # nested: joins the outer batch
            write_atomic(b, "B")
        assert not a.exists() and not b.exists()  # held back until the batch ends
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with output_batch():
        write_atomic(a, "A")
        write_atomic(b, "B")
    assert a.read_text() == "A" and b.read_text() == "B"
    write_atomic(a, "A2")  # outside a batch: at once
    assert a.read_text() == "A2"



# ------------------------------------------------------------------------------------------------ SIGTERM


def test_sigterm_in_process_is_an_interrupt_with_exit_143(cli, monkeypatch, tmp_path):
    """SIGTERM after the CSV is written but before the command ends: as Ctrl-C, with the shell's 128 + 15."""
    from fleetwise.cli import traffic

    out = tmp_path / "s.csv"
    out.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(traffic.console, "print", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))

    def not_handled(signum, frame):  # were main() not to handle it, the default action would end pytest
        raise AssertionError("SIGTERM reached the handler main() should have replaced")

    previous = signal.signal(signal.SIGTERM, not_handled)
    try:
        res = cli("traffic", "synth", "--days", "1", "-o", str(out))
        assert signal.getsignal(signal.SIGTERM) is not_handled  # main() put the previous handler back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert res.code == 143
    assert res.err_lines == [f"fleetwise: terminated (not written: {out})"]
    assert out.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_sigterm_mid_write_leaves_no_file(fleetwise_exe, tmp_path):
    """The console script writing a ~140 MB CSV gets SIGTERM while the temporary file grows: exit 143, one
    line, and neither the output nor the temporary file is left."""
    proc = subprocess.Popen([fleetwise_exe, "traffic", "synth", "--days", "3", "--trace", "-o", "big.csv"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".tmp") and _size(p) > 0 for p in _entries(tmp_path)):
            assert proc.poll() is None, "finished before it was signalled: make the output larger"
            assert time.monotonic() < deadline, "no temporary file within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert err.splitlines() == ["fleetwise: terminated"]
    assert list(tmp_path.iterdir()) == []


def _size(path: Path) -> int:
    """Its size, or 0 if it went away after it was listed (the writer renamed or removed it meanwhile)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _entries(directory: Path) -> list[Path]:
    """The directory's files, skipping one removed while it is listed."""
    out = []
    for entry in os.scandir(directory):
        try:
            entry.stat()
        except FileNotFoundError:
            continue
        out.append(Path(entry.path))
    return out


def test_temporary_files_still_held_are_removed_at_exit(tmp_path):
    """A temporary file whose block never ended (the process is leaving) is removed by the exit hook."""
    block = atomic_path(tmp_path / "a.csv")
    tmp = block.__enter__()
    tmp.write_text("half", encoding="utf-8")
    remove_leftovers()
    assert list(tmp_path.iterdir()) == []


def test_interrupt_inside_atomic_path_removes_its_temporary_file(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "a.csv") as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
