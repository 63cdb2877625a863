"""``fleetwise optimize``: the seed scenario, evaluation against the actual series, forward planning, bad input.

Each optimize run over a series plans replica configurations first (~1-2 s), so runs are few and each checks
several things.
"""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import as_json, flat

from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.records import RateSeries
from fleetwise.traffic.write import write_series_csv

STRATEGIES = ("All on-demand", "All reserved (1yr)", "Reserved + spot burst", "Hybrid optimized")
BASELINE_KEYS = {"name", "applicable", "reason", "cost_usd", "unmet_demand_fraction", "savings_fraction"}
RESERVED_NA = {"name": "all reserved (peak)", "applicable": False, "reason": "no offer has a reserved price",
               "cost_usd": None, "unmet_demand_fraction": None, "savings_fraction": None}


@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "series.csv"
    write_series_csv(synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1), path)
    return path


# ------------------------------------------------------------------------------------------------ seed scenario


def test_seed_scenario_text(cli):
    res = cli("optimize", "--scenario", "seed")
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    text = flat(res.out)
    for name in STRATEGIES:
        assert name in text
    assert "$95,699" in text  # 4 x $32.77 x 730 h + the first cold starts
    assert "$55,655" in text  # 4 x $19.06 x 730 h
    assert "$32,616" in text  # 2 reserved + 2 spot nodes in the 241 peak hours
    for published in ("$94,700", "$55,000", "$44,200", "$38,500"):
        assert published in text
    assert "follows" in text and "does not follow" in text


def test_seed_scenario_json(cli):
    out = as_json(cli("optimize", "--scenario", "seed", "--json"))
    assert out["scenario"] == "seed"
    rows = {r["strategy"]: r for r in out["rows"]}
    assert list(rows) == list(STRATEGIES)
    assert rows["All on-demand"]["monthly_usd"] == pytest.approx(4 * 32.77 * 730, rel=0.005)
    assert rows["All reserved (1yr)"]["monthly_usd"] == pytest.approx(4 * 19.06 * 730)
    assert rows["Hybrid optimized"]["monthly_usd"] <= rows["Reserved + spot burst"]["monthly_usd"] * 1.1
    assert rows["Hybrid optimized"]["unmet_demand_fraction"] == 0.0
    for r in rows.values():
        assert {"reserved", "on_demand", "spot", "savings_vs_on_demand", "published_usd", "verdict"} <= set(r)


# ------------------------------------------------------------------------------------------- series: evaluation


def test_evaluate_on_series_json_and_report(cli, series_csv, tmp_path):
    report = tmp_path / "r.html"
    res = cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "1", "--cloud", "aws",
              "--json", "--report", report)
    out = as_json(res)
    assert {"reservations", "cost", "evaluation"} <= set(out)
    assert set(out["cost"]) >= {"total_usd", "by_tier"}
    assert set(out["cost"]["by_tier"]) == {"reserved", "spot", "on_demand"}
    assert out["cost"]["total_usd"] == pytest.approx(sum(out["cost"]["by_tier"].values()))
    ev = out["evaluation"]
    assert {"cost_usd", "unmet_demand_fraction", "hindsight_cost_usd", "ratio_to_hindsight", "baselines"} <= set(ev)
    assert ev["cost_usd"] == pytest.approx(out["cost"]["total_usd"])
    assert ev["ratio_to_hindsight"] == pytest.approx(ev["cost_usd"] / ev["hindsight_cost_usd"], rel=1e-4)
    assert ev["ratio_to_hindsight"] >= 0.98
    assert 0 <= ev["unmet_demand_fraction"] < 0.05
    assert ev["hindsight_lower_bound_usd"] <= ev["hindsight_cost_usd"] * (1 + 1e-6)
    assert len(ev["baselines"]) == 4
    for b in ev["baselines"]:
        assert set(b) == BASELINE_KEYS
        assert b["applicable"] is True and b["reason"] is None
        assert b["cost_usd"] >= ev["hindsight_cost_usd"] / 1.02
    assert ev["baselines"][0]["name"] == "all on-demand (peak)"
    assert "1 month per year of term" in out["reservation_evidence_rule"]
    for r in out["reservations"]:
        assert r["offer"].startswith("aws/")
        assert r["term"] in ("reserved_1y", "reserved_3y") and r["count"] > 0
        assert 0 < r["break_even_utilization"] < 1
        # the evidence: 3 training days are far too few for any term
        assert r["history_days"] == pytest.approx(3.0) and r["thin"] is True
        assert any("rests on 3.0 days of history" in w for w in r["warnings"])
        assert 0 <= r["days_above_break_even"] <= 1 and 0 <= r["last_instance_utilization"] <= 1
    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html.lower()
    assert "<img" in html
    assert "hindsight optimum" in html


# ------------------------------------------------------------------- every cloud, with or without reserved prices


@pytest.mark.parametrize("cloud", ["gcp", "azure", "lambda"])
def test_evaluate_on_clouds_without_reserved_prices_json(cli, series_csv, tmp_path, cloud):
    report = tmp_path / "r.html"
    extra = ("--report", report) if cloud == "gcp" else ()
    out = as_json(cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "1", "--cloud", cloud,
                      "--json", *extra))
    assert all(o.startswith(f"{cloud}/") for o in out["schedule"]["offers"])
    assert out["reservations"] == [] and out["cost"]["by_tier"]["reserved"] == 0.0
    ev = out["evaluation"]
    assert ev["cost_usd"] > 0 and ev["hindsight_cost_usd"] > 0
    assert 0 <= ev["unmet_demand_fraction"] < 0.05
    rows = ev["baselines"]
    assert [b["name"] for b in rows] == ["all on-demand (peak)", "all reserved (peak)", "reactive on-demand",
                                         "percentile (P25 res / P75 spot / P99 OD)"]
    assert all(set(b) == BASELINE_KEYS for b in rows)
    assert rows[1] == RESERVED_NA
    for b in (rows[0], *rows[2:]):
        assert b["applicable"] is True and b["reason"] is None and b["cost_usd"] > 0
    if cloud != "lambda":  # Lambda sells on-demand only
        assert np.sum(out["schedule"]["spot"]) > 0
    if extra:
        html = report.read_text()
        assert "hindsight optimum" in html and "n/a: no offer has a reserved price" in html  # the reason, not nan


def test_evaluate_without_reserved_prices_text(cli, series_csv):
    res = cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "1", "--cloud", "lambda")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    assert "all reserved (peak) n/a — no offer has a reserved price" in text
    assert "No reservations: none of the offers has a reserved price" in text
    assert "hindsight optimum" in text and "reactive on-demand" in text


def test_evaluate_without_cloud_lets_every_cloud_compete(cli, series_csv):
    out = as_json(cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "1", "--json"))
    clouds = {o.split("/")[0] for o in out["schedule"]["offers"]}
    assert len(clouds) > 1, clouds
    rows = out["evaluation"]["baselines"]
    assert len(rows) == 4 and all(set(b) == BASELINE_KEYS for b in rows)
    for b in rows:  # applicable or not, a row never stops the command
        assert (b["cost_usd"] is None) == (not b["applicable"]) == (b["reason"] is not None)


# ------------------------------------------------------------------------------------------ series: forward plan


def test_forward_plan_json(cli, series_csv):
    out = as_json(cli("optimize", "--series", series_csv, "--horizon", "2d", "--freq", "1h", "--cloud", "aws",
                      "--json"))
    assert {"reservations", "cost", "schedule", "baselines", "gap"} <= set(out)
    assert out["cost"]["total_usd"] == pytest.approx(sum(out["cost"]["by_tier"].values()))
    monthly = sum(out["cost"]["monthly_by_tier"].values())
    assert monthly == pytest.approx(out["cost"]["total_usd"] * 730 / 48)  # a 48-hour horizon
    sched = out["schedule"]
    assert sched["period_h"] == 1.0
    assert len(sched["demand_rps"]) == 48
    n_offers = len(sched["offers"])
    assert len(sched["spot"]) == len(sched["on_demand"]) == n_offers
    assert all(len(row) == 48 for row in (*sched["spot"], *sched["on_demand"]))
    assert all(o.startswith("aws/") for o in sched["offers"])
    assert out["gap"] >= 0
    names = [b["name"] for b in out["baselines"]]
    assert len(names) == 3
    assert names[0] == "all on-demand (peak)" and names[1].startswith("all reserved")
    assert names[2].startswith("percentile")
    assert all(b["cost_usd"] > 0 and b["applicable"] for b in out["baselines"])


def test_forward_plan_text_and_report(cli, series_csv, tmp_path):
    report = tmp_path / "plan.html"
    res = cli("optimize", "--series", series_csv, "--horizon", "1d", "--cloud", "aws", "--report", report)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    text = flat(res.out)
    assert "Offers considered" in text
    assert "Planned on the forecast" in text and "for 24 h" in text
    assert "vs all on-demand (peak)" in text
    assert "Reservations to buy" in text or "No reservations" in text
    html = report.read_text()
    assert html.count("<img") >= 2  # the schedule and the cumulative cost
    assert "Monthly cost by tier" in html


# -------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("argv", "needles"), [
    (("--scenario", "nope"), ("nope", "seed")),
    (("--series", "SERIES", "--quantile", "1.5"), ("--quantile",)),
    (("--series", "SERIES", "--quantile", "0"), ("--quantile",)),
    (("--series", "SERIES", "--train-days", "3"), ("--train-days", "--eval-days")),
    (("--series", "SERIES", "--eval-days", "1"), ("--train-days", "--eval-days")),
    (("--series", "SERIES", "--report", "x.txt"), ("--report", "html")),
    (("--series", "no-such-series.csv",), ("no-such-series.csv",)),
    (("--series", "SERIES", "--max-spot-share", "2"), ("spot share",)),
    (("--series", "SERIES", "--min-nonspot-share", "-0.5"), ("non-spot",)),
    (("--series", "SERIES", "--cold-start-s", "-1"), ("cold start",)),
    (("--series", "SERIES", "--freq", "bogus"), ("--freq", "bogus")),
], ids=["unknown-scenario", "quantile-1.5", "quantile-0", "train-without-eval", "eval-without-train",
        "report-not-html", "missing-series", "spot-share-2", "nonspot-negative", "cold-start-negative",
        "freq-bogus"])
def test_bad_options_are_one_line(cli, user_error, series_csv, argv, needles):
    argv = tuple(str(series_csv) if a == "SERIES" else a for a in argv)
    user_error(cli("optimize", *argv), *needles)


def test_windows_longer_than_the_series(cli, user_error, series_csv):
    line = user_error(cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "2",
                          "--cloud", "aws"), "3 training + 2 evaluation days do not fit")
    assert "4.0 days" in line


def test_console_script_unknown_scenario(script, user_error):
    res = script("optimize", "--scenario", "nope")
    user_error(res, "nope")
    assert res.code == 2 and res.out == ""


# ------------------------------------------------------------------------------------------ zero-demand windows


def test_evaluation_window_without_demand(cli, tmp_path):
    s = synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1)
    values = s.values.copy()
    values[144:] = 0.0  # the evaluation day: no traffic at all
    path = tmp_path / "quiet.csv"
    write_series_csv(RateSeries(s.start_s, s.period_s, values), path)
    report = tmp_path / "quiet.html"
    res = cli("optimize", "--series", path, "--train-days", "3", "--eval-days", "1", "--cloud", "aws", "--json",
              "--report", report)
    out = as_json(res)
    assert out["evaluation"]["hindsight_cost_usd"] == 0.0
    assert out["evaluation"]["ratio_to_hindsight"] is None
    assert "<img" in report.read_text()


def test_forward_plan_without_demand_text(cli, tmp_path):
    path = tmp_path / "zeros.csv"
    write_series_csv(RateSeries(0.0, 3600.0, np.zeros(96)), path)
    res = cli("optimize", "--series", path, "--horizon", "1d", "--cloud", "aws")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert "Planned on the forecast" in flat(res.out)


def test_forward_plan_without_reserved_prices(cli, series_csv):
    out = as_json(cli("optimize", "--series", series_csv, "--horizon", "1d", "--freq", "1h", "--cloud", "gcp",
                      "--json"))
    assert out["reservations"] == []
    rows = out["baselines"]
    assert [b["name"] for b in rows] == ["all on-demand (peak)", "all reserved (peak)",
                                         "percentile (P25 res / P75 spot / P99 OD)"]
    assert rows[1] == {k: v for k, v in RESERVED_NA.items() if k != "savings_fraction"}
    assert rows[0]["applicable"] and rows[0]["cost_usd"] > 0
    res = cli("optimize", "--series", series_csv, "--horizon", "1d", "--freq", "1h", "--cloud", "gcp")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert "vs all reserved (peak): n/a — no offer has a reserved price" in flat(res.out)


@pytest.fixture
def zeros_csv(tmp_path):
    path = tmp_path / "all-zero.csv"
    write_series_csv(RateSeries(0.0, 1800.0, np.zeros(4 * 48)), path)
    return path


def test_all_zero_series_evaluation_provisions_nothing(cli, zeros_csv):
    # An all-zero series is a valid answer, not an error: nothing to provision, $0 for every strategy.
    out = as_json(cli("optimize", "--series", zeros_csv, "--train-days", "3", "--eval-days", "1", "--json"))
    ev = out["evaluation"]
    assert out["cost"]["total_usd"] == 0.0 and ev["hindsight_cost_usd"] == 0.0
    assert ev["ratio_to_hindsight"] is None and out["reservations"] == []
    assert np.sum(out["schedule"]["spot"]) == np.sum(out["schedule"]["on_demand"]) == 0
    for b in ev["baselines"]:
        assert set(b) == BASELINE_KEYS
        assert b["cost_usd"] in (0.0, None) and b["savings_fraction"] is None
    res = cli("optimize", "--series", zeros_csv, "--train-days", "3", "--eval-days", "1")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    assert "nothing to provision" in text
    assert "fleetwise (forecast + MILP + rolling) $0" in text and "hindsight optimum $0" in text


# ------------------------------------------------------------------------------- reservations and their evidence


def _steady_csv(tmp_path, days: int):
    path = tmp_path / f"steady-{days}d.csv"
    write_series_csv(RateSeries(0.0, 3600.0, np.full(days * 24, 6.0)), path)
    return path


def test_reservation_on_a_long_steady_history_is_evidenced(cli, tmp_path):
    out = as_json(cli("optimize", "--series", _steady_csv(tmp_path, 100), "--horizon", "1d", "--cloud", "aws",
                      "--json"))
    assert out["reservations"], "a steady demand with reservable offers should buy a reservation"
    for r in out["reservations"]:
        assert r["history_days"] == pytest.approx(100.0)
        assert r["min_history_days"] == pytest.approx(r["term_days"] / 12)
        assert r["days_above_break_even"] == 1.0  # the same demand every day
        assert r["margin"] == pytest.approx(r["last_instance_utilization"] - r["break_even_utilization"])
        assert r["margin"] > 0 and r["warnings"] == [] and r["thin"] is False


def test_reservation_on_two_days_is_flagged_thin(cli, tmp_path):
    res = cli("optimize", "--series", _steady_csv(tmp_path, 2), "--horizon", "1d", "--cloud", "aws")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    assert "Reservations to buy, on 2.0 days of demand history" in text
    assert "THIN" in text
    assert "warning:" in text and "rests on 2.0 days of history; a 3y term asks for at least 91 days" in text
    assert "flagged when its history is shorter than 1 month per year of term" in text


def test_a_spike_beyond_the_caps_does_not_stop_the_comparison(cli, tmp_path):
    # One bin of the operated day far above what one on-demand instance of every offer can serve: the
    # hindsight row covers what the caps allow instead of stopping the command with an infeasible plan.
    values = np.full(4 * 48, 50.0)
    values[3 * 48 + 20] = 50_000.0
    path = tmp_path / "spike.csv"
    write_series_csv(RateSeries(0.0, 1800.0, values), path)
    out = as_json(cli("optimize", "--series", path, "--train-days", "3", "--eval-days", "1", "--cloud", "lambda",
                      "--on-demand-cap", "1", "--json"))
    ev = out["evaluation"]
    assert ev["hindsight_cost_usd"] > 0
    assert ev["unmet_demand_fraction"] > 0.5  # the spike is most of the day's requests, and nobody serves it
    assert [b["name"] for b in ev["baselines"]][1] == "all reserved (peak)"
