"""Vectorized cell parsers: token counts, floats and times (numbers with a unit, or ISO-8601 date-times)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from fleetwise.traffic.columns import parse_count, parse_float, parse_time

T0 = datetime(2023, 11, 16, 18, 15, 46, tzinfo=UTC).timestamp()  # 1_700_158_546


def test_parse_count_strings():
    vals, bad = parse_count(pa.array(["12", "12.0", "+5", "7.", "-3", "1.5", "x", "", None]))
    assert bad.tolist() == [False, False, False, False, True, True, True, True, True]
    assert vals.dtype == np.int64
    assert vals[:4].tolist() == [12, 12, 5, 7]
    assert vals[4:].tolist() == [0] * 5  # bad cells are zero-filled


def test_parse_count_numeric_arrays():
    vals, bad = parse_count(pa.array([3.0, 2.5, -1.0, float("nan"), 4.0]))
    assert bad.tolist() == [False, True, True, True, False]
    assert vals[[0, 4]].tolist() == [3, 4]
    vals, bad = parse_count(pa.array([1, None, 7], pa.int64()))
    assert bad.tolist() == [False, True, False] and vals[[0, 2]].tolist() == [1, 7]


def test_parse_float_strings_and_missing():
    arr = pa.array(["1.5", ".5", "5e3", "-2", "nan", "", "NULL", None, "x", "inf"])
    vals, bad = parse_float(arr)
    assert vals[:4].tolist() == [1.5, 0.5, 5000.0, -2.0]
    assert bad.tolist() == [False] * 4 + [True] * 6
    vals, bad = parse_float(arr, allow_missing=True)
    assert bad.tolist() == [False] * 8 + [True, True]  # missing markers are NaN, not bad; junk stays bad
    assert np.isnan(vals[4:8]).all()


def test_parse_time_numbers_with_unit():
    secs, bad, epoch = parse_time(pa.array([0, 1500, 2250]), unit_s=1e-3)
    assert secs.tolist() == [0.0, 1.5, 2.25] and not bad.any() and epoch is False
    secs, bad, epoch = parse_time(pa.array(["10", "20.5", "oops"]))
    assert secs[:2].tolist() == [10.0, 20.5] and bad.tolist() == [False, False, True] and epoch is False


def test_parse_time_iso_naive_is_utc_with_fraction():
    secs, bad, epoch = parse_time(pa.array(["2023-11-16 18:15:46.6805900", "2023-11-16T18:15:47"]))
    assert epoch is True and not bad.any()
    assert secs[0] == pytest.approx(T0 + 0.68059, abs=1e-6)
    assert secs[1] == pytest.approx(T0 + 1.0, abs=1e-6)


@pytest.mark.parametrize(
    "text", ["2023-11-16T18:15:46Z", "2023-11-16T19:15:46+01:00", "2023-11-16T19:15:46+0100",
             "2023-11-16T13:15:46-05:00", "2023-11-16 18:15:46"],
)
def test_parse_time_zones_honoured(text):
    secs, bad, epoch = parse_time(pa.array([text]))
    assert epoch is True and not bad.any()
    assert secs[0] == pytest.approx(T0, abs=1e-6)


def test_parse_time_date_only_and_minutes():
    secs, bad, _ = parse_time(pa.array(["2023-11-16", "2023-11-16T18:15"]))
    assert not bad.any()
    assert secs.tolist() == pytest.approx([T0 - (18 * 3600 + 15 * 60 + 46), T0 - 46])


def test_parse_time_impossible_date_is_bad_not_fatal():
    secs, bad, epoch = parse_time(pa.array(["2023-13-01 00:00:00", "2023-11-16T18:15:46Z", "2023-11-16 18:15:47"]))
    assert epoch is True
    assert bad.tolist() == [True, False, False]
    assert secs[1:].tolist() == pytest.approx([T0, T0 + 1])


def test_parse_time_number_among_dates_is_bad():
    secs, bad, epoch = parse_time(pa.array(["2023-11-16T18:15:46Z", "12345", "soon"]))
    assert epoch is True and bad.tolist() == [False, True, True]
    assert secs[0] == pytest.approx(T0)


def test_parse_time_timestamp_typed_column():
    arr = pa.array([0, 1_500_000_000, None], pa.timestamp("ns", tz="UTC"))
    secs, bad, epoch = parse_time(arr)
    assert epoch is True
    assert bad.tolist() == [False, False, True]
    assert secs[:2].tolist() == [0.0, 1.5]




@pytest.mark.parametrize(
    "parse",
    [pytest.param(parse_count, id="count"),
     pytest.param(parse_float, id="float"),
     pytest.param(lambda a: parse_time(a)[:2], id="time")],
)
def test_blank_padded_numbers_parse(parse):
    vals, bad = parse(pa.array([" 12", "7 ", "3"]))
    assert not bad.any()
    assert vals.tolist() == [12, 7, 3]
