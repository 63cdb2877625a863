"""Fixtures of the CLI tests: run ``fleetwise`` in-process (fast) or as the real console script.

Most tests call :func:`fleetwise.cli.main` in-process with ``sys.argv`` patched, which exercises the
same FleetwiseError -> ``fleetwise: error: ...`` mapping as the console script without paying the
interpreter start-up for every command. An exception escaping ``main()`` is rendered the way the
console script would render it (a ``Traceback`` on stderr, exit code 1) so the "no traceback" checks
mean the same thing in both modes.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.shared_data import shared

MEASURED = shared("perf", "measured_calibration.csv")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines()]


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    return 1  # sys.exit("message")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No user catalog from the environment; run in a scratch directory so nothing lands in the repo."""
    monkeypatch.delenv("FLEETWISE_CATALOG", raising=False)
    monkeypatch.delenv("FLEETWISE_CATALOG_NAME", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("plan", "--json", ...)`` -> Result(code, out, err), running fleetwise.cli.main in-process."""
    from fleetwise.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()  # drop anything printed before
        monkeypatch.setattr(sys, "argv", ["fleetwise", *map(str, args)])
        extra_err = ""
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - what the console script would show: a traceback and exit 1
            extra_err = traceback.format_exc()
            code = 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err + extra_err)

    return run


@pytest.fixture(scope="session")
def fleetwise_exe() -> str:
    exe = shutil.which("fleetwise")
    if exe is None:
        pytest.skip("the fleetwise console script is not on PATH (pip install -e .)")
    return exe


@pytest.fixture
def script(fleetwise_exe):
    """``script("plan", ...)`` -> Result, running the real console script as a subprocess."""

    def run(*args: str, timeout: float = 120) -> Result:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        env.pop("FLEETWISE_CATALOG", None)
        env.pop("FLEETWISE_CATALOG_NAME", None)
        proc = subprocess.run(
            [fleetwise_exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def assert_user_error(res: Result, *needles: str) -> str:
    """The CLI contract for bad input: non-zero exit, exactly one stderr line, no traceback anywhere."""
    assert "Traceback" not in res.out and "Traceback" not in res.err, f"traceback:\n{res.err}"
    assert res.code != 0, f"expected a non-zero exit; stdout:\n{res.out}\nstderr:\n{res.err}"
    lines = res.err_lines
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{res.err}"
    line = lines[0]
    assert line.startswith("fleetwise: error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


@pytest.fixture(name="user_error")
def _user_error_fixture():
    """The :func:`assert_user_error` check, as a fixture (test modules do not import conftest)."""
    return assert_user_error


@pytest.fixture(name="write_csv")
def _write_csv_fixture():
    return write_rows


@pytest.fixture(scope="session")
def measured_rows() -> list[dict[str, str]]:
    if not MEASURED.is_file():
        pytest.skip(f"{MEASURED} is not available")
    with MEASURED.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
