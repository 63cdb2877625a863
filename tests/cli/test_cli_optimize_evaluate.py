"""``fleetwise optimize --evaluate requests``: every strategy's operated schedule replayed request by request,
in --json and as tables that fit 80 columns; bad option values are one-line errors."""

from __future__ import annotations

import os
import subprocess

import pytest
from cli_helpers import as_json, flat

from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.write import write_series_csv

FAST = ("--train-days", "3", "--eval-days", "1", "--cloud", "aws", "--evaluate", "requests",
        "--evaluate-requests", "2000", "--quiet")


@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "series.csv"
    write_series_csv(synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1), path)
    return path


def test_requests_json_has_every_strategy_next_to_its_fluid_figures(cli, series_csv, tmp_path):
    report = tmp_path / "allocation.html"
    out = as_json(cli("optimize", "--series", series_csv, *FAST, "--json", "--report", report))
    assert "Request by request (simulated)" in report.read_text()  # the report carries the replay too
    ev = out["evaluation"]
    req = ev["requests"]
    assert req["requests_per_day"] == 2000 and req["windows_per_day"] == 4
    assert "Poisson" in req["arrivals"] and "lognormal" in req["lengths"] and "capacity" in req["routing"]
    assert req["slo_ms"] == {"ttft": 1000.0, "tpot": 50.0}
    names = [s["name"] for s in req["strategies"]]
    assert len(names) == 2 + len(ev["baselines"]) and names[-1] == "hindsight optimum"
    fleetwise = req["strategies"][0]
    assert fleetwise["cost_usd"] == pytest.approx(ev["cost_usd"])
    assert fleetwise["unmet_demand_fraction"] == pytest.approx(ev["unmet_demand_fraction"])
    for s, b in zip(req["strategies"][1:-1], ev["baselines"], strict=True):
        assert s["name"] == b["name"] and s["applicable"] == b["applicable"]
    for s in (s for s in req["strategies"] if s["applicable"]):
        assert len(s["days"]) == 1
        day = s["days"][0]
        assert 0 < day["requests_simulated"] <= 2000
        assert 0 <= day["slo_attainment"] <= 1 and day["unmet_demand_fraction"] is not None
        assert s["within_slo_per_usd"] == pytest.approx(s["requests_within_slo"] / s["cost_usd"])
        assert s["slo_attainment_se"] is None or 0 <= s["slo_attainment_se"] <= 0.5
        assert s["ttft_p95_ms"] > 0 and s["tpot_p95_ms"] > 0


def test_requests_tables_fit_80_columns(fleetwise_exe, series_csv):
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("FLEETWISE_CATALOG", None)
    env.pop("FLEETWISE_CATALOG_NAME", None)
    proc = subprocess.run([fleetwise_exe, "optimize", "--series", str(series_csv), *FAST], check=False,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    text = flat(proc.stdout)
    header = next(line for line in lines if "SLO met" in line and "in SLO/$" in line)
    for column in ("unmet", "SLO met", "in SLO/$"):
        assert column in header
    for name in ("fleetwise", "hindsight optimum", "SLO met by day", "Replayed in the fleet simulator",
                 "drawn in proportion to demand"):
        assert name in text


@pytest.mark.parametrize("args, option", [
    (("--evaluate", "request"), "--evaluate"),
    (("--evaluate-requests", "0"), "--evaluate-requests"),
    (("--evaluate-requests", "nan"), "--evaluate-requests"),
    (("--evaluate-requests", "5000000"), "--evaluate-requests"),
    (("--evaluate-windows", "0"), "--evaluate-windows"),
    (("--evaluate-windows", "200", "--evaluate-requests", "150"), "--evaluate-windows"),
    (("--evaluate", "requests", "--catalog", "seed-scenario"), "--catalog"),
])
def test_bad_evaluate_options_are_one_line_errors(cli, series_csv, args, option):
    res = cli("optimize", "--series", series_csv, "--train-days", "3", "--eval-days", "1", *args)
    assert res.code != 0
    assert "Traceback" not in res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and option in lines[0], res.err


def test_requests_need_an_evaluation_window(cli, series_csv):
    res = cli("optimize", "--series", series_csv, "--evaluate", "requests")
    assert res.code != 0 and "Traceback" not in res.err
    assert "--train-days" in res.err and len(res.err.strip().splitlines()) == 1
