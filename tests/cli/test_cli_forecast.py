"""``fleetwise forecast``: quantile forecasts and backtests from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import PNG_MAGIC, as_json, flat

from fleetwise.forecast import AUTO_CANDIDATES, METHODS
from fleetwise.traffic import SyntheticSpec, synthetic_series, synthetic_trace
from fleetwise.traffic.write import write_series_csv, write_trace_csv

DAYS = 9
N_BINS = DAYS * 144  # 10-minute bins
BACKTEST_KEYS = {"wape", "mape", "pinball", "coverage", "under_provision", "folds"}




@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("forecast")
    series = d / "series.csv"
    write_series_csv(synthetic_series(SyntheticSpec(days=DAYS, period_s=600), seed=4), series)
    trace = d / "trace.csv"
    write_trace_csv(synthetic_trace(SyntheticSpec(days=1.5, base_rps=0.2), seed=1), trace)
    unknown = d / "unknown.csv"
    unknown.write_text("foo,bar,baz\n1,2,3\n4,5,6\n")
    return {"series": series, "trace": trace, "unknown": unknown, "dir": d}


def _check_forecast(rows: list[dict], n: int, quantiles=("0.5", "0.9", "0.95")) -> None:
    assert len(rows) == n
    keys = ["time", *(f"q{q}" for q in quantiles)]
    assert all(list(r) == keys for r in rows)
    for r in rows:
        levels = [r[k] for k in keys[1:]]
        assert all(v >= 0 for v in levels) and levels == sorted(levels)


def test_forecastas_json(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "1h", "--json"))
    assert d["requested_method"] == "auto" and d["method"] in AUTO_CANDIDATES
    assert d["period_s"] == 600 and d["horizon_steps"] == 6
    assert d["quantiles"] == [0.5, 0.9, 0.95]
    assert "backtest" not in d and "backtest_all" not in d
    _check_forecast(d["forecast"], 6)
    assert [r["time"] for r in d["forecast"][:2]] == [DAYS * 86_400, DAYS * 86_400 + 600]


def test_forecast_horizon_rounds_up_to_whole_bins(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "25min", "--method", "persistence", "--json"))
    assert d["horizon_steps"] == 3
    _check_forecast(d["forecast"], 3)


def test_forecast_backtestas_json(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "1h", "--backtest", "--json"))
    bt = d["backtest"]
    assert set(bt) == BACKTEST_KEYS
    assert bt["folds"] == (N_BINS - 6 - 7 * 144) // 6 + 1  # one origin per hour after a 7-day warm-up
    assert set(bt["coverage"]) == set(bt["pinball"]) == {"0.5", "0.9", "0.95"}
    assert 0 < bt["wape"] < 1 and 0 <= bt["coverage"]["0.95"] <= 1
    assert bt["under_provision"]["0.95"] == pytest.approx(1 - bt["coverage"]["0.95"], abs=2e-6)
    every = {s["method"]: s for s in d["backtest_all"]}
    assert list(every) == [*METHODS, "auto"]
    assert all(s["horizon_steps"] == 6 and s["folds"] == bt["folds"] for s in every.values())
    assert every["auto"]["wape"] == bt["wape"]
    assert set(every["auto"]["chosen"]) <= set(AUTO_CANDIDATES)
    assert sum(every["auto"]["chosen"].values()) == bt["folds"]
    _check_forecast(d["forecast"], 6)


def test_forecast_backtest_folds(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "1h", "--method", "profile", "--backtest",
                  "--folds", "5", "--json"))
    assert d["backtest"]["folds"] == 5
    assert [s["method"] for s in d["backtest_all"]] == ["profile"]


def test_forecast_method_ets(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "1h", "--method", "ets", "--json"))
    assert d["method"] == d["requested_method"] == "ets"
    _check_forecast(d["forecast"], 6)


def test_forecast_quantiles(cli, files):
    d = as_json(cli("forecast", str(files["series"]), "--horizon", "30min", "--method", "profile",
                  "--quantiles", "0.8,0.5", "--json"))
    assert d["quantiles"] == [0.5, 0.8]
    _check_forecast(d["forecast"], 3, ("0.5", "0.8"))


def test_forecast_a_request_trace(cli, files):
    d = as_json(cli("forecast", str(files["trace"]), "--freq", "5min", "--horizon", "1h", "--json"))
    assert d["period_s"] == 300 and d["horizon_steps"] == 12
    _check_forecast(d["forecast"], 12)
    median = np.array([r["q0.5"] for r in d["forecast"]])
    assert np.all((median > 0.02) & (median < 2.0))  # the trace runs at ~0.2 req/s (x daily swing)


def test_forecast_text_and_plot(cli, files, tmp_path):
    plot = tmp_path / "f.png"
    res = cli("forecast", str(files["series"]), "--horizon", "1h", "--method", "profile-ar", "--backtest",
              "--folds", "4", "--plot", str(plot))
    assert res.code == 0, res.err
    out = flat(res.out)
    assert "method profile-ar" in out and "Rolling-origin backtest" in out and "Forecast (req/s)" in out
    assert "day 9 00:00" in out
    assert "Figure written to" in out
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_forecast_html_plot(cli, files, tmp_path):
    plot = tmp_path / "f.html"
    assert cli("forecast", str(files["series"]), "--horizon", "1h", "--method", "profile", "--json",
               "--plot", str(plot)).code == 0
    assert b"<img" in plot.read_bytes()


def test_forecast_builtin_synthetic_workload(cli):
    res = cli("forecast", "--horizon", "1h", "--json")
    d = as_json(res)
    assert "built-in synthetic" in flat(res.err)
    assert d["period_s"] == 300 and d["horizon_steps"] == 12
    _check_forecast(d["forecast"], 12)
    assert d["forecast"][0]["time"] == 14 * 86_400  # the 14-day default workload ends there


def test_forecast_console_script(script, files):
    d = as_json(script("forecast", str(files["series"]), "--horizon", "1h", "--method", "seasonal-naive", "--json"))
    assert d["method"] == "seasonal-naive"
    _check_forecast(d["forecast"], 6)


# -------------------------------------------------------------------------------------------- bad input

BAD = [
    ("method-foo", ("{series}", "--method", "foo"), ("--method", "foo")),
    ("horizon-abc", ("{series}", "--horizon", "abc"), ("--horizon", "abc")),
    ("horizon-0", ("{series}", "--horizon", "0"), ("--horizon",)),
    ("quantiles-2", ("{series}", "--quantiles", "2"), ("quantiles", "2")),
    ("quantiles-words", ("{series}", "--quantiles", "a,b"), ("--quantiles",)),
    ("folds-0", ("{series}", "--folds", "0"), ("--folds",)),
    ("freq-not-a-multiple", ("{series}", "--freq", "7min"), ("aggregate",)),
    ("history-too-long", ("{series}", "--backtest", "--history-days", "20"), ("no room",)),
    ("missing-file", ("{dir}/missing.csv",), ("missing.csv", "no such file")),
    ("unknown-columns", ("{unknown}",), ("unknown.csv", "columns")),
    ("plot-missing-dir", ("{series}", "--plot", "{dir}/no/f.png"), ("no/f.png",)),
    ("plot-suffix", ("{series}", "--method", "persistence", "--plot", "{dir}/f.txt"), ("f.txt", ".png")),
]


@pytest.mark.parametrize(("argv", "needles"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_one_line(cli, user_error, files, argv, needles):
    args = [a.format(**files) for a in argv]
    res = cli("forecast", *args)
    user_error(res, *needles)
    assert res.code == 2
    assert res.out == ""


def test_bad_option_via_the_console_script(script, user_error, files):
    user_error(script("forecast", str(files["series"]), "--method", "foo"), "foo")


def test_plot_suffix_is_checked_before_loading(cli, user_error, files):
    user_error(cli("forecast", str(files["dir"] / "missing.csv"), "--plot", str(files["dir"] / "f.txt")),
               "f.txt", ".png")


def test_backtest_of_a_method_without_enough_history_is_not_silent(cli, files):
    res = cli("forecast", str(files["series"]), "--horizon", "1h", "--method", "seasonal-naive-week",
              "--backtest", "--history-days", "3", "--json")
    if res.code == 0:
        assert "backtest" in json.loads(res.out)
    else:
        assert res.err.startswith("fleetwise: error:") and "history" in res.err.lower()


def test_short_history_warns_on_stderr_and_in_json(cli, tmp_path):
    path = tmp_path / "hour.csv"
    write_series_csv(synthetic_series(SyntheticSpec(days=1 / 24, period_s=300, noise_cv=0.2), seed=3), path)
    res = cli("forecast", str(path), "--quantiles", "0.5,0.95", "--horizon", "1h", "--json")
    d = as_json(res)
    assert len(d["warnings"]) == 1 and "too little history for a calibrated band" in d["warnings"][0]
    assert [line for line in res.err.splitlines() if "warning" in line] == [f"fleetwise: warning: {d['warnings'][0]}"]
    assert all(r["q0.95"] > r["q0.5"] for r in d["forecast"])
