"""``fleetwise traffic summarize | convert | synth`` on small files made here."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import PNG_MAGIC, as_json, flat

from fleetwise.traffic import load_series, load_trace, trace_to_series
from fleetwise.traffic.synth import SyntheticSpec, synthetic_series

T0 = dt.datetime(2023, 11, 16, 18, 0, 0)  # a Thursday
N_REQ = 300




def _azure_rows(n: int = N_REQ, seed: int = 0):
    rng = np.random.default_rng(seed)
    gaps_us = rng.integers(50_000, 4_000_000, n)  # 0.05-4 s apart, whole microseconds
    arrival_us = np.cumsum(gaps_us)
    inp = rng.integers(10, 2000, n)
    out = rng.integers(1, 500, n)
    stamps = [(T0 + dt.timedelta(microseconds=int(u))).strftime("%Y-%m-%d %H:%M:%S.%f") + "0" for u in arrival_us]
    return arrival_us / 1e6, inp, out, [f"{s},{i},{o}" for s, i, o in zip(stamps, inp, out, strict=True)]


def write_azure(path: Path, bad_lines: dict[int, str] | None = None) -> Path:
    """An Azure-format trace; ``bad_lines`` replaces data rows (key = 1-based file line, header is line 1)."""
    *_, lines = _azure_rows()
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens", *lines]
    for number, text in (bad_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def azure(tmp_path) -> Path:
    return write_azure(tmp_path / "azure.csv")


SERIES_VALUES = 10.0 + np.arange(48) % 24  # two days of hourly rates, 10..33 req/s, no zeros


@pytest.fixture
def hourly(tmp_path) -> Path:
    path = tmp_path / "hourly.csv"
    rows = [f"{3600 * i},{v}" for i, v in enumerate(SERIES_VALUES)]
    path.write_text("time,value\n" + "\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------------------------------- summarize


def test_summarize_trace_text(cli, azure):
    res = cli("traffic", "summarize", str(azure))
    assert res.code == 0, res.err
    out = flat(res.out)
    assert "azure" in out and "300 requests" in out
    assert "Token lengths" in out and "inter-arrival CV" in out and "Busiest weekday" in out


def test_summarize_traceas_json(cli, azure):
    arrival, inp, out, _ = _azure_rows()
    d = as_json(cli("traffic", "summarize", str(azure), "--json"))
    assert d["kind"] == "trace"
    assert d["requests"] == N_REQ
    duration = arrival[-1] - arrival[0]
    assert d["duration_s"] == pytest.approx(duration, abs=1e-5)
    assert d["mean_rate_rps"] == pytest.approx((N_REQ - 1) / duration, rel=1e-5)
    gaps = np.diff(arrival)
    assert d["interarrival_cv"] == pytest.approx(gaps.std() / gaps.mean(), rel=1e-5)
    assert set(d["rate"]) == {"mean", "p50", "p95", "max"}
    assert d["rate"]["p50"] <= d["rate"]["p95"] <= d["rate"]["max"]
    assert d["peak_to_mean"] == pytest.approx(d["rate"]["max"] / d["rate"]["mean"], rel=1e-4)
    assert d["input_tokens"]["mean"] == pytest.approx(inp.mean(), rel=1e-6)
    assert d["input_tokens"]["max"] == inp.max()
    assert d["input_tokens"]["p50"] == pytest.approx(np.percentile(inp, 50))
    assert d["output_tokens"]["max"] == out.max()
    assert d["tokens_per_s_mean"] == pytest.approx((inp.sum() + out.sum()) / duration, rel=1e-5)
    assert d["missing_bins"] == 0 and d["warnings"] == []
    prof = d["profile"]
    assert prof["bin_s"] == 300
    assert prof["rows"], prof
    for row in prof["rows"]:
        assert {"weekday", "time_of_day", "samples", "rate_p50", "rate_p75", "rate_p95",
                "tokens_per_s_p50", "tokens_per_s_p95"} <= set(row)
        assert row["weekday"] == "Thu" and row["time_of_day"].startswith("18:")
        assert row["rate_p50"] <= row["rate_p75"] <= row["rate_p95"]


def test_summarize_seriesas_json(cli, hourly):
    d = as_json(cli("traffic", "summarize", str(hourly), "--json"))
    v = SERIES_VALUES
    assert d["kind"] == "series"
    assert d["rate_bin_s"] == 3600 and d["duration_s"] == 48 * 3600
    assert d["requests"] == pytest.approx(v.sum() * 3600)
    assert d["mean_rate_rps"] == pytest.approx(v.mean())
    assert d["rate"] == pytest.approx({"mean": v.mean(), "p50": np.percentile(v, 50),
                                       "p95": np.percentile(v, 95), "max": v.max()})
    assert d["peak_to_mean"] == pytest.approx(v.max() / v.mean(), rel=1e-5)
    assert d["interarrival_cv"] is None and d["input_tokens"] is None and d["output_tokens"] is None
    prof = d["profile"]
    assert prof["bin_s"] == 3600  # never finer than the series
    assert len(prof["rows"]) == 48
    row = next(r for r in prof["rows"] if r["weekday"] == "day1" and r["time_of_day"] == "05:00")
    assert row["samples"] == 1
    assert row["rate_p50"] == row["rate_p75"] == row["rate_p95"] == 15.0


def test_summarize_series_text(cli, hourly):
    res = cli("traffic", "summarize", str(hourly))
    assert res.code == 0, res.err
    assert "series" in res.out and "Token lengths" not in res.out


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_summarize_plot(cli, azure, tmp_path, suffix):
    plot = tmp_path / f"x{suffix}"
    res = cli("traffic", "summarize", str(azure), "--plot", str(plot))
    assert res.code == 0, res.err
    assert "Figure written to" in flat(res.out)
    data = plot.read_bytes()
    if suffix == ".png":
        assert data.startswith(PNG_MAGIC)
    else:
        assert b"<img" in data and b"data:image/png;base64," in data


def test_summarize_plot_of_a_series(cli, hourly, tmp_path):
    plot = tmp_path / "s.png"
    assert cli("traffic", "summarize", str(hourly), "--plot", str(plot), "--json").code == 0
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_summarize_plot_with_an_unknown_suffix_fails_cleanly(cli, user_error, azure, tmp_path):
    user_error(cli("traffic", "summarize", str(azure), "--plot", str(tmp_path / "x.txt")), "x.txt", ".png")
    assert not (tmp_path / "x.txt").exists()


def test_summarize_plot_in_a_missing_directory_fails_before_loading(cli, user_error, tmp_path):
    user_error(cli("traffic", "summarize", str(tmp_path / "missing.csv"), "--plot", str(tmp_path / "no" / "x.png")),
               "no/x.png", "directory")


def test_summarize_plot_with_an_unknown_suffix_fails_before_loading(cli, user_error, tmp_path):
    user_error(cli("traffic", "summarize", str(tmp_path / "missing.csv"), "--plot", str(tmp_path / "x.txt")),
               "x.txt", ".png")


def test_summarize_warns_about_a_few_bad_rows(cli, tmp_path):
    good = write_azure(tmp_path / "good.csv").read_text().splitlines()
    path = write_azure(tmp_path / "onebad.csv", {6: good[5].rsplit(",", 2)[0] + ",-3,10"})
    res = cli("traffic", "summarize", str(path), "--json")
    d = as_json(res)
    assert d["requests"] == N_REQ - 1
    err = flat(res.err)
    assert "warning" in err and "onebad.csv" in err
    assert "skipped 1 bad row(s) of 300" in err and "line 6" in err and "ContextTokens" in err
    assert any("skipped 1 bad row" in w for w in d["warnings"])


def test_summarize_fails_on_too_many_bad_rows_naming_file_and_line(cli, user_error, tmp_path):
    good = write_azure(tmp_path / "good.csv").read_text().splitlines()
    bad = {k: good[k - 1].rsplit(",", 2)[0] + ",abc,10" for k in range(9, 300, 20)}  # 15 of 300 > 1 %
    path = write_azure(tmp_path / "manybad.csv", bad)
    line = user_error(cli("traffic", "summarize", str(path)), "manybad.csv", "line 9", "ContextTokens", "15 bad row")
    assert "--max-bad-rows" in line
    # ... and a higher threshold accepts the file
    assert cli("traffic", "summarize", str(path), "--max-bad-rows", "20", "--json").code == 0


def test_summarize_missing_file(cli, user_error, tmp_path):
    user_error(cli("traffic", "summarize", str(tmp_path / "nope.csv")), "nope.csv", "no such file")


def test_summarize_console_script(script, azure):
    res = script("traffic", "summarize", str(azure), "--json")
    d = as_json(res)
    assert d["requests"] == N_REQ and d["kind"] == "trace"


# --------------------------------------------------------------------------------------------- convert


def test_convert_trace_to_series(cli, azure, tmp_path):
    out = tmp_path / "series.csv"
    res = cli("traffic", "convert", str(azure), "-o", str(out), "--freq", "5min")
    assert res.code == 0, res.err
    assert "bins of 300 s written" in flat(res.out)
    series = load_series(out)
    assert series.period_s == 300 and series.epoch
    expected = trace_to_series(load_trace(azure), 300.0)  # float: see the report on int periods
    assert series.start_s == expected.start_s
    np.testing.assert_allclose(series.values, expected.values, rtol=1e-9)
    arrival = _azure_rows()[0]
    in_second_bin = np.sum((arrival >= 300) & (arrival < 600))  # 18:05-18:10 (T0 is 18:00), a whole bin
    assert series.values[1] * 300 == pytest.approx(in_second_bin)


def test_convert_time_compress_doubles_the_rate(cli, azure, tmp_path):
    out = tmp_path / "fast.csv"
    res = cli("traffic", "convert", str(azure), "-o", str(out), "--time-compress", "2")
    assert res.code == 0, res.err
    before, after = load_trace(azure), load_trace(out)
    assert len(after) == len(before)
    assert after.mean_rate_rps == pytest.approx(2 * before.mean_rate_rps, rel=1e-6)
    assert after.start_s == pytest.approx(before.start_s, abs=1e-6)
    np.testing.assert_array_equal(after.input_tokens, before.input_tokens)
    np.testing.assert_array_equal(after.output_tokens, before.output_tokens)


def test_convert_rate_multiply_thins(cli, azure, tmp_path):
    out = tmp_path / "thin.csv"
    assert cli("traffic", "convert", str(azure), "-o", str(out), "--rate-multiply", "0.5").code == 0
    assert 100 < len(load_trace(out)) < 200


def test_convert_series_to_trace(cli, tmp_path):
    src = tmp_path / "flat.csv"
    src.write_text("time,value\n" + "\n".join(f"{300 * i},2.0" for i in range(12)) + "\n")  # 2 req/s for 1 h
    out = tmp_path / "sampled.csv"
    res = cli("traffic", "convert", str(src), "-o", str(out))
    assert res.code == 0, res.err
    trace = load_trace(out)
    assert abs(len(trace) - 7200) < 5 * np.sqrt(7200)
    assert trace.arrival_s.min() >= 0 and trace.arrival_s.max() <= 3600
    assert (trace.input_tokens > 0).all() and (trace.output_tokens > 0).all()


def test_convert_bad_compression_is_one_line(cli, user_error, azure, tmp_path):
    user_error(cli("traffic", "convert", str(azure), "-o", str(tmp_path / "o.csv"), "--time-compress", "0"),
               "compression")


# ----------------------------------------------------------------------------------------------- synth


def test_synth_series(cli, tmp_path):
    out = tmp_path / "s.csv"
    res = cli("traffic", "synth", "-o", str(out), "--days", "2")
    assert res.code == 0, res.err
    assert "576 bins of 300 s" in flat(res.out)
    series = load_series(out)
    assert len(series) == 576 and series.period_s == 300 and not series.epoch
    expected = synthetic_series(SyntheticSpec(days=2), seed=0)
    np.testing.assert_allclose(series.values, expected.values, rtol=1e-9)


def test_synth_trace(cli, tmp_path):
    out = tmp_path / "t.csv"
    res = cli("traffic", "synth", "-o", str(out), "--trace", "--base-rps", "1", "--days", "0.2")
    assert res.code == 0, res.err
    trace = load_trace(out)
    expected = synthetic_series(SyntheticSpec(days=0.2, base_rps=1.0), seed=0).counts.sum()
    assert abs(len(trace) - expected) < 5 * np.sqrt(expected)
    assert trace.arrival_s.max() <= 58 * 300  # 0.2 days rounds to 58 five-minute bins
    assert (trace.input_tokens > 0).all()


@pytest.mark.parametrize(("args", "needle"), [
    (("--days", "0"), "days"),
    (("--period", "soon"), "--period"),
    (("--weekend-factor", "0"), "weekend_factor"),
])
def test_synth_bad_options_are_one_line(cli, user_error, tmp_path, args, needle):
    user_error(cli("traffic", "synth", "-o", str(tmp_path / "s.csv"), *args), needle)
