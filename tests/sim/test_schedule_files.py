"""Malformed schedule (``simulate --schedule``) and preemption (``--preemptions``) files: one-line errors that name
the file, the line and the field, and instance counts bounded so a typo cannot stall the simulator."""

from __future__ import annotations

import json
import time

import pytest

from fleetwise.errors import InputFormatError
from fleetwise.sim.strategies import MAX_SCHEDULE_INSTANCES, read_preemptions, read_schedule


def _error(call, *needles: str) -> str:
    with pytest.raises(InputFormatError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


@pytest.mark.parametrize(("name", "read"), [("sched.csv", read_schedule), ("pre.txt", read_preemptions)])
def test_binary_files_are_named(tmp_path, name, read):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    _error(lambda: read(path), name, "UTF-8")


@pytest.mark.parametrize(("text", "where"), [
    ("time_s,on_demand\n\n\n0,2\n60,x\n", "line 5"),  # blank lines are counted
    ('time_s,on_demand,note\n0,2,"two\nlines"\n60,x,x\n', "line 4"),  # so are the lines of a quoted cell
], ids=["blank-lines", "multiline-cell"])
def test_line_number_is_the_physical_line(tmp_path, text, where):
    path = tmp_path / "s.csv"
    path.write_text(text)
    _error(lambda: read_schedule(path), f"s.csv: {where}: field 'on_demand'", "'x'")


@pytest.mark.parametrize(("row", "word"), [("0,2", "fewer"), ("0,2,1,5", "more")])
def test_row_with_the_wrong_number_of_cells(tmp_path, row, word):
    path = tmp_path / "s.csv"
    path.write_text(f"time_s,on_demand,spot\n{row}\n")
    _error(lambda: read_schedule(path), "s.csv: line 2", word)


def test_empty_cell_is_zero_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("\ufefftime_s,on_demand,spot\r\n0,2,\r\n   \r\n60,3,1\r\n")
    sched = read_schedule(path)
    assert sched.times_s == [0.0, 60.0]
    assert sched.counts == [{"on_demand": 2, "spot": 0}, {"on_demand": 3, "spot": 1}]


def test_duplicate_column_is_named(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("time_s,on_demand,on_demand\n0,1,2\n")
    _error(lambda: read_schedule(path), "line 1", "field 'on_demand'")


def test_huge_csv_count_is_refused_fast(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(f"time_s,on_demand\n0,1\n60,{MAX_SCHEDULE_INSTANCES}\n120,1e9\n")
    start = time.perf_counter()
    _error(lambda: read_schedule(path), "line 4: field 'on_demand'", f"{MAX_SCHEDULE_INSTANCES:,}")
    assert time.perf_counter() - start < 5


def test_huge_optimize_count_is_refused(tmp_path):
    path = tmp_path / "opt.json"
    path.write_text(json.dumps({"schedule": {"period_h": 1.0, "offers": ["a"], "spot": [[0, 1]],
                                             "on_demand": [[1, 1e300]]}}))
    _error(lambda: read_schedule(path), "opt.json: period 1: field 'on_demand'")
    path.write_text(json.dumps({"reservations": [{"offer": "a", "count": 10**12}],
                                "schedule": {"period_h": 1.0, "offers": ["a"], "spot": [[0]], "on_demand": [[1]]}}))
    _error(lambda: read_schedule(path), "opt.json", "reservations")


def test_preemption_line_numbers_and_values(tmp_path):
    path = tmp_path / "pre.txt"
    path.write_text("time_s\n# notices\n30\n\nsoon\n")
    _error(lambda: read_preemptions(path), "pre.txt: line 5: field 'time'", "'soon'")
    path.write_text("time_s\n90 # late\n30\n")
    assert read_preemptions(path) == (30.0, 90.0)
