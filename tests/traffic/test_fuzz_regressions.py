"""Bad input found by fuzzing the traffic readers: each case gets a one-line error naming the file (and the line
or entry and field), never a traceback, a silent wrong answer, or an allocation that runs for hours."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pytest

from fleetwise.errors import ConfigError, FleetwiseError, InputFormatError
from fleetwise.forecast import QuantileForecaster
from fleetwise.traffic import RateSeries, RequestTrace, SyntheticSpec, load, load_series, load_trace
from fleetwise.traffic.columns import MAX_COUNT, MAX_TIME_S, parse_count, parse_time
from fleetwise.traffic.convert import (
    MAX_BINS,
    grid_series,
    rate_multiply,
    series_time_compress,
    time_compress,
    trace_to_series,
)
from fleetwise.traffic.summary import summarize, trace_profile

HEADER = "timestamp,input_tokens,output_tokens\n"


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------- cell parsers


def test_count_above_the_bound_is_bad_not_wrapped():
    vals, bad = parse_count(pa.array(["99999999999999999999", str(MAX_COUNT), str(MAX_COUNT + 1), "9" * 400]))
    assert bad.tolist() == [True, False, True, True]
    assert vals.tolist() == [0, MAX_COUNT, 0, 0]
    vals, bad = parse_count(pa.array([2.0**70, 5.0, float(MAX_COUNT + 1)]))
    assert bad.tolist() == [True, False, True] and vals[1] == 5


def test_time_beyond_the_bound_is_bad():
    _, bad, _ = parse_time(pa.array(["1e300", str(MAX_TIME_S), "-1e12", "5"]))
    assert bad.tolist() == [True, False, True, False]
    _, bad, _ = parse_time(pa.array([0.0, 1e15, float("nan")]))
    assert bad.tolist() == [False, True, True]
    # a time in ms read as seconds is out of range; with its unit it is fine
    assert parse_time(pa.array([1.7e15]))[1].tolist() == [True]
    assert parse_time(pa.array([1.7e15]), unit_s=1e-6)[1].tolist() == [False]


def test_nested_cells_are_bad_cells():
    arr = pa.array([{"a": 1}, None])
    assert parse_count(arr)[1].tolist() == [True, True]
    assert parse_time(arr)[1].tolist() == [True, True]
    assert parse_count(pa.array([[1], [2, 3]]))[1].tolist() == [True, True]


# ---------------------------------------------------------------------------------------------- trace files


def test_token_count_overflow_names_file_line_and_field(write):
    path = write("overflow.csv", HEADER + "".join(f"{k},99999999999999999999,30\n" for k in range(5)))
    with pytest.raises(InputFormatError) as info:
        load_trace(path)
    _one_line(info, "overflow.csv", "line 2", "field 'input_tokens'")


@pytest.mark.parametrize("malformed", [False, True], ids=["arrow-reader", "line-by-line"])
def test_jsonl_count_overflow(write, malformed):
    lines = [json.dumps({"timestamp": k, "input_length": 2**70 if k == 3 else 10, "output_length": 5})
             for k in range(200)]
    if malformed:
        lines[5] = "{not json"
    trace = load_trace(write("t.jsonl", "\n".join(lines) + "\n"), max_bad_rows=2)
    assert len(trace) == 199 - malformed and trace.input_tokens.max() == 10
    assert any("line 4: field 'input_length'" in d for d in trace.report.first_bad)


def test_jsonl_nested_values_are_bad_rows(write):
    text = "".join(json.dumps({"timestamp": {"a": 1}, "input_length": [1], "output_length": {"b": 2}}) + "\n"
                   for _ in range(5))
    with pytest.raises(InputFormatError) as info:
        load_trace(write("nested.jsonl", text))
    _one_line(info, "nested.jsonl", "line 1", "input_length")


def test_mooncake_prefix_ids_that_are_not_integers(write):
    text = "".join(json.dumps({"timestamp": k, "input_length": 5, "output_length": 5, "hash_ids": ["a", "b"]})
                   + "\n" for k in range(3))
    with pytest.raises(InputFormatError) as info:
        load_trace(write("m.jsonl", text))
    _one_line(info, "m.jsonl", "field 'hash_ids'")


def test_absurd_timestamp_is_a_bad_row(write):
    with pytest.raises(InputFormatError) as info:
        load_trace(write("hugetime.csv", HEADER + "0,50,30\n1e300,50,30\n"))
    _one_line(info, "hugetime.csv", "line 3", "field 'timestamp'")


def test_bad_row_line_number_after_a_multiline_cell(write):
    trace = load_trace(write("m.csv", HEADER + '1,"5\n",5\n2,5,5\n3,y,5\n'), max_bad_rows=1)
    assert trace.report.first_bad == ("line 5: field 'input_tokens': bad value 'y'",)


def test_rejected_multiline_row_is_numbered_by_its_first_line(write):
    text = HEADER + '1,1,1\n2,"a\nb",7,8\n3,1,1\n4,x,1\n'
    trace = load_trace(write("m.csv", text), max_bad_rows=2)
    assert trace.report.first_bad == ("line 3: wrong number of fields: '2,\"a\\nb\",7,8'",
                                      "line 6: field 'input_tokens': bad value 'x'")


def test_duplicate_header_column_is_named(write):
    path = write("dup.csv", "timestamp,input_tokens,output_tokens,input_tokens\n0,1,1,2\n1,1,1,2\n")
    with pytest.raises(InputFormatError) as info:
        load_trace(path)
    _one_line(info, "dup.csv", "field 'input_tokens'")


def test_duplicate_unused_column_is_harmless(write):
    trace = load_trace(write("dup.csv", "timestamp,input_tokens,output_tokens,note,note\n0,1,1,a,b\n1,1,1,a,b\n"))
    assert len(trace) == 2


def test_trace_missing_its_output_column_is_not_a_series(write):
    path = write("no_out.csv", "timestamp,input_tokens\n" + "".join(f"{k},{100 + k}\n" for k in range(5)))
    with pytest.raises(InputFormatError) as info:
        load(path)
    _one_line(info, "no_out.csv", "output")
    assert isinstance(load(write("s.csv", "time,rate\n0,1\n60,2\n")), RateSeries)  # a real series still loads


def test_loaded_data_know_their_file(write):
    trace = load_trace(write("t.csv", HEADER + "0,1,1\n1,2,2\n"))
    assert trace.report.file == str(write("t.csv", HEADER + "0,1,1\n1,2,2\n"))
    assert trace_to_series(trace, 60.0).report.file == trace.report.file
    series = load_series(write("s.csv", "time,value\n0,1\n60,2\n"))
    assert series.report.file.endswith("s.csv")


# ------------------------------------------------------------------------------------------ summaries


def test_trace_at_one_instant_cannot_be_summarized(write):
    trace = load_trace(write("same.csv", HEADER + "5,50,30\n" * 10))
    with pytest.raises(InputFormatError) as info:
        summarize(trace)
    _one_line(info, "same.csv", "same time")


def test_trace_spanning_too_many_bins_fails_fast():
    trace = RequestTrace(np.array([0.0, 1e10]), np.array([1, 1]), np.array([1, 1]))
    start = time.perf_counter()
    with pytest.raises(FleetwiseError, match="bins"):
        trace_to_series(trace, 60.0)
    with pytest.raises(FleetwiseError, match="bins"):
        trace_profile(trace, 300.0)
    with pytest.raises(FleetwiseError, match="bin length"):
        trace_to_series(RequestTrace(np.array([0.0, 1.0]), np.array([1, 1]), np.array([1, 1])), 1e-7)
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------------------------- series


def test_series_with_a_tiny_spacing(write):
    path = write("tiny.csv", "time,value\n" + "".join(f"{1e-9 * k},5\n" for k in range(100)))
    with pytest.raises(InputFormatError) as info:
        load_series(path)
    _one_line(info, "tiny.csv")


def test_sparse_irregular_series_fails_fast(write):
    path = write("irregular.csv", "time,value\n0,5\n1,5\n1000000,5\n1000001.5,5\n")
    start = time.perf_counter()
    with pytest.raises(InputFormatError) as info:
        load_series(path)
    _one_line(info, "irregular.csv", "only 4 of")
    assert time.perf_counter() - start < 5


def test_grid_with_gaps_still_loads():
    t = np.concatenate([np.arange(0, 600) * 60.0, np.arange(1200, 1800) * 60.0])  # a third of it missing
    series = grid_series(t, np.ones(len(t)), epoch=False)
    assert len(series) == 1800 and np.isnan(series.values).sum() == 600


def test_grid_beyond_the_bin_bound_fails_fast():
    with pytest.raises(FleetwiseError, match=f"{MAX_BINS:,}"):
        grid_series(np.array([0.0, 1.0, 2.0, 1e8]), np.ones(4), epoch=False, period_s=1.0)


def test_all_missing_series_names_the_file(write):
    path = write("all_nan.csv", "time,value\n" + "".join(f"{3600 * k},nan\n" for k in range(48)))
    with pytest.raises(InputFormatError) as info:
        load_series(path)
    _one_line(info, "all_nan.csv", "no known values")


def _prometheus(write, name: str, values) -> str:
    return write(name, json.dumps({"data": {"resultType": "matrix", "result": [{"values": values}]}}))


@pytest.mark.parametrize(("values", "needles"), [
    ([[0, "5"], [float("nan"), "6"], [60, "7"]], ("values[1]", "time nan")),
    ([[0, "5"], [1e12, "6"]], ("values[1]", "time 1e+12")),
    ([[k * 60, "-5"] for k in range(10)], ("values[0]", "negative")),
], ids=["nan-time", "far-apart", "negative"])
def test_prometheus_bad_points_name_file_entry_and_field(write, values, needles):
    with pytest.raises(InputFormatError) as info:
        load_series(_prometheus(write, "p.json", values))
    _one_line(info, "p.json", "entry 'result[0]'", *needles)


def test_prometheus_stale_values_stay_missing(write):
    series = load_series(_prometheus(write, "p.json", [[0, "5"], [60, "NaN"], [120, "7"]]))
    assert np.isnan(series.values).tolist() == [False, True, False]


def test_daily_bins_forecast_without_ets():
    # Prometheus points far apart, or daily totals: ETS's daily seasonality needs two or more bins a day
    series = RateSeries(0.0, 86_400.0, 10.0 + np.arange(60) % 7)
    with pytest.raises(ConfigError) as info:
        QuantileForecaster("ets").fit(series).predict_quantiles(1)
    _one_line(info, "method 'ets'", "12 h")
    for method in ("auto", "ensemble", "persistence"):
        fc = QuantileForecaster(method).fit(series)
        if method == "ensemble":
            with pytest.raises(ConfigError, match="12 h"):
                fc.predict_quantiles(2)
        else:
            assert np.isfinite(fc.predict_quantiles(2).values).all()
            assert fc.chosen not in ("ets", "ensemble")


# ------------------------------------------------------------------------------------ options and synth


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), 0.0])
def test_replay_factors_must_be_positive_and_finite(factor):
    trace = RequestTrace(np.array([0.0, 1.0]), np.array([1, 1]), np.array([1, 1]))
    series = RateSeries(0.0, 60.0, np.ones(3))
    for call in (lambda: time_compress(trace, factor), lambda: series_time_compress(series, factor),
                 lambda: rate_multiply(trace, factor)):
        with pytest.raises(ConfigError, match="positive"):
            call()


def test_rate_multiply_refuses_a_huge_trace():
    trace = RequestTrace(np.array([0.0, 1.0]), np.array([1, 1]), np.array([1, 1]))
    with pytest.raises(ConfigError, match="limit"):
        rate_multiply(trace, 1e9)


@pytest.mark.parametrize(("changes", "needle"), [
    ({"bursts_per_day": 1e9}, "bursts_per_day"), ({"days": 1e9}, "bins"), ({"days": float("inf")}, "days"),
    ({"base_rps": float("inf")}, "base_rps"), ({"peak_hour": float("nan")}, "peak_hour"),
])
def test_synthetic_spec_bounds(changes, needle):
    with pytest.raises(ConfigError, match=needle):
        SyntheticSpec(**changes)
