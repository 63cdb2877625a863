"""``fleetwise simulate`` and ``fleetwise compare``: a trace replayed through a simulated fleet.

Every run here uses a small trace written into a scratch directory (600 requests in Azure format, or 2,000
longer requests in a generic CSV named with --time-col/--input-col/--output-col) on Llama-3.1-8B FP8 with one
H100 per engine, priced from AWS (the cheapest such offer with a spot price is the 8-GPU p5.48xlarge, so one
instance hosts eight engines). Only one test runs the default synthetic 70B workload.

The regression section at the end holds the cases an earlier version got wrong.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import PNG_MAGIC, as_json, flat

from fleetwise.catalog import load_catalog

OFFER = "aws/us-east-1/p5.48xlarge"  # 8 x H100 SXM: on-demand, spot and reserved prices
ENGINES_PER_INSTANCE = 8
FLEET = ("--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "1", "--precision", "fp8", "--cloud", "aws")
GENERIC_COLS = ("--time-col", "arr", "--input-col", "inp", "--output-col", "out")
STRATEGY_NAMES = ("static-peak", "static-spot", "reactive", "reactive-spot", "budget", "rolling")
PCT_KEYS = {"p50", "p95", "p99"}
REQUIRED = {"requests", "completed", "migrated", "requeued", "dropped", "unfinished", "ttft_ms", "tpot_ms",
            "slo_attainment", "cost_usd", "usd_per_1m_tokens"}
TIMELINE_HEADER = ["t_s", "serving_reserved", "serving_on_demand", "serving_spot", "provisioning_reserved",
                   "provisioning_on_demand", "provisioning_spot", "arrivals_rps", "in_flight", "queued",
                   "ttft_p95_ms", "cost_usd"]

T0 = dt.datetime(2023, 11, 16, 18, 0, 0)
N_AZURE = 600  # over 5 minutes
N_BUSY = 2000  # over 5 minutes, 200-1200 output tokens: requests in flight at any spot notice


# ------------------------------------------------------------------------------------------------ inputs


def _azure_lines(n: int = N_AZURE, seed: int = 1, span_s: float = 300.0) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, span_s, n))
    t[0] = 0.0
    inp = rng.integers(100, 2000, n)
    out = rng.integers(20, 400, n)
    stamps = [(T0 + dt.timedelta(microseconds=round(float(x) * 1e6))).strftime("%Y-%m-%d %H:%M:%S.%f") for x in t]
    return t, inp, out, [f"{s},{i},{o}" for s, i, o in zip(stamps, inp, out, strict=True)]


def write_azure(path: Path, lines: list[str]) -> Path:
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(lines) + "\n")
    return path


def _busy_rows(n: int = N_BUSY, seed: int = 2) -> list[str]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 300.0, n))
    inp = rng.integers(100, 2000, n)
    out = rng.integers(200, 1200, n)
    return [f"{a:.4f},{i},{o}" for a, i, o in zip(t, inp, out, strict=True)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sim_inputs")


@pytest.fixture(scope="module")
def azure(data_dir) -> Path:
    """600 requests over 5 minutes, Azure format (date-time stamps, auto-detected)."""
    return write_azure(data_dir / "azure.csv", _azure_lines()[3])


@pytest.fixture(scope="module")
def azure_tokens() -> int:
    _, inp, out, _ = _azure_lines()
    return int(inp.sum() + out.sum())


@pytest.fixture(scope="module")
def busy(data_dir) -> Path:
    """2,000 requests over 5 minutes with long outputs, generic CSV whose columns need naming."""
    path = data_dir / "busy.csv"
    path.write_text("arr,inp,out\n" + "\n".join(_busy_rows()) + "\n")
    return path


@pytest.fixture(scope="module")
def replay(data_dir) -> Path:
    """Two spot notices to replay (a header, a comment and a blank line are skipped)."""
    path = data_dir / "notices.csv"
    path.write_text("t_s\n# the first spot instance, then its replacement while it boots\n60\n\n130\n")
    return path


def simulate(cli, trace: Path, *args, generic: bool = False):
    return cli("simulate", "--trace", trace, *(GENERIC_COLS if generic else ()), *FLEET, *args)


def compare(cli, trace: Path, *args, generic: bool = False):
    return cli("compare", "--trace", trace, *(GENERIC_COLS if generic else ()), *FLEET, *args)


def prices() -> dict[str, float]:
    offer = load_catalog().offer(OFFER)
    reserved = offer.price("reserved_1y") or offer.price("reserved_3y")
    return {"on_demand": offer.price("on_demand"), "spot": offer.price("spot"), "reserved": reserved}


def read_timeline(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def check_accounting(d: dict) -> None:
    """The invariants of every run's JSON."""
    assert REQUIRED <= set(d), REQUIRED - set(d)
    assert d["completed"] + d["dropped"] + d["unfinished"] == d["requests"]
    assert set(d["ttft_ms"]) == PCT_KEYS and set(d["tpot_ms"]) == PCT_KEYS
    assert set(d["cost_by_tier"]) == {"reserved", "on_demand", "spot"}
    assert sum(d["cost_by_tier"].values()) == pytest.approx(d["cost_usd"], abs=1e-5)
    assert d["migrated"] >= 0 and d["requeued"] >= 0
    assert 0.0 <= d["slo_attainment"] <= 1.0


def without_wall_time(d: dict) -> dict:
    out = json.loads(json.dumps(d))
    for entry in out.get("strategies", [out]):
        entry.pop("wall_s", None)
    return out


# ------------------------------------------------------------------------------------------- JSON output


def test_json_has_the_required_fields_and_adds_up(cli, azure, azure_tokens):
    res = simulate(cli, azure, "--json")
    d = as_json(res)
    check_accounting(d)
    assert d["strategy"] == "static-peak"  # the default policy
    assert d["requests"] == N_AZURE
    assert d["completed"] == N_AZURE and d["dropped"] == d["unfinished"] == 0  # one 8-engine instance is plenty
    assert d["migrated"] == d["requeued"] == d["preemptions"] == 0
    for key in ("ttft_ms", "tpot_ms"):
        p = d[key]
        assert 0 < p["p50"] <= p["p95"] <= p["p99"]
    assert d["ttft_ms"]["p95"] < 1000 and d["tpot_ms"]["p95"] < 50  # within the default SLO at this load
    assert d["slo_attainment"] == 1.0
    assert d["cost_usd"] > 0
    assert d["usd_per_1m_tokens"] == pytest.approx(d["cost_usd"] / azure_tokens * 1e6, rel=1e-4)
    assert [c["name"] for c in d["by_class"]] == ["interactive"]
    assert d["by_class"][0]["requests"] == N_AZURE
    # the offer picked for --cloud aws, and the run's description on stderr (no progress bar left behind)
    err = flat(res.err)
    assert f"{N_AZURE} requests over 5.0 min" in err and OFFER in err
    assert d["instances_launched"] == {"reserved": 0, "on_demand": 1, "spot": 0}
    # a warm on-demand instance billed from t=0 to the end of the run
    assert d["cost_by_tier"]["on_demand"] == pytest.approx(prices()["on_demand"] * d["duration_s"] / 3600, rel=1e-4)


def test_text_output_is_a_table(cli, azure):
    res = simulate(cli, azure)
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    for label in ("requests", "completed", "migrated/requeued", "dropped/unfinished", "TTFT ms p50/95/99",
                  "SLO met", "$/1M tokens", "spot notices"):
        assert label in text
    assert "static-peak: 1 on_demand instances over 5 min" in text


def test_dropped_requests_are_counted_with_their_reason(cli, tmp_path):
    _, _, _, lines = _azure_lines()
    stamp = lines[100].split(",")[0]
    lines[100:100] = [f"{stamp},200000,10", f"{stamp},131000,500"]  # beyond Llama-3.1's 131,072-token window
    d = as_json(simulate(cli, write_azure(tmp_path / "long.csv", lines), "--json"))
    check_accounting(d)
    assert d["requests"] == N_AZURE + 2
    assert d["dropped"] == 2 and d["dropped_by_reason"] == {"exceeds_context": 2}
    assert d["completed"] == N_AZURE and d["unfinished"] == 0
    assert d["slo_attainment"] == pytest.approx(N_AZURE / (N_AZURE + 2))


def test_an_empty_fleet_leaves_every_request_unfinished(cli, azure, tmp_path):
    sched = tmp_path / "none.csv"
    sched.write_text("time_s,on_demand\n0,0\n")
    timeline = tmp_path / "none_timeline.csv"
    d = as_json(simulate(cli, azure, "--schedule", sched, "--tail", "2min", "--json", "--timeline", timeline))
    check_accounting(d)
    assert d["unfinished"] == N_AZURE and d["completed"] == 0
    assert d["cost_usd"] == 0.0
    assert d["usd_per_1m_tokens"] is None  # no tokens served: not a number, and still valid JSON
    assert d["ttft_ms"] == {"p50": None, "p95": None, "p99": None}
    assert d["duration_s"] == pytest.approx(300.0 + 120.0, abs=1.0)  # last arrival + --tail
    _, rows = read_timeline(timeline)
    assert int(rows[-1]["queued"]) == N_AZURE


# --------------------------------------------------------------------------------- fleet: replicas/schedule


def test_replicas_round_up_to_whole_instances_and_split_spot(cli, azure):
    d = as_json(simulate(cli, azure, "--replicas", "9", "--json"))  # 9 engines -> two 8-engine instances
    check_accounting(d)
    assert d["strategy"] == "9 replicas"
    assert d["instances_launched"] == {"reserved": 0, "on_demand": 2, "spot": 0}
    assert d["cost_by_tier"]["on_demand"] == pytest.approx(2 * prices()["on_demand"] * d["duration_s"] / 3600,
                                                           rel=1e-4)

    d = as_json(simulate(cli, azure, "--replicas", "16", "--spot-fraction", "0.5", "--spot-availability", "1",
                         "--json"))
    check_accounting(d)
    assert d["instances_launched"] == {"reserved": 0, "on_demand": 1, "spot": 1}
    assert d["preemptions"] == 0  # the offer's own interruption rate is tiny over five minutes
    p = prices()
    assert d["cost_by_tier"]["spot"] == pytest.approx(p["spot"] * d["duration_s"] / 3600, rel=1e-4)
    assert d["cost_by_tier"]["on_demand"] == pytest.approx(p["on_demand"] * d["duration_s"] / 3600, rel=1e-4)


def test_schedule_csv_is_followed(cli, azure, tmp_path):
    sched = tmp_path / "schedule.csv"
    sched.write_text("time_s,reserved,on_demand,spot\n0,1,1,0\n120,1,2,1\n")
    timeline = tmp_path / "timeline.csv"
    d = as_json(simulate(cli, azure, "--schedule", sched, "--cold-start-s", "30", "--spot-availability", "1",
                         "--json", "--timeline", timeline))
    check_accounting(d)
    assert d["strategy"] == "schedule"
    assert d["instances_launched"] == {"reserved": 1, "on_demand": 2, "spot": 1}
    # reserved capacity is billed for the whole run at the reserved price
    assert d["cost_by_tier"]["reserved"] == pytest.approx(prices()["reserved"] * d["duration_s"] / 3600, rel=1e-4)
    _, rows = read_timeline(timeline)
    by_t = {float(r["t_s"]): r for r in rows}
    assert (by_t[60.0]["serving_on_demand"], by_t[60.0]["serving_spot"]) == ("1", "0")
    # launched one cold start ahead, so the second row's fleet is serving at 120 s
    assert (by_t[120.0]["serving_reserved"], by_t[120.0]["serving_on_demand"], by_t[120.0]["serving_spot"]) == \
        ("1", "2", "1")


def test_schedule_from_optimize_json(cli, azure, tmp_path):
    plan = {
        "reservations": [{"offer": "aws/us-west-2/p5.4xlarge", "term": "reserved_3y", "count": 1,
                          "break_even_utilization": 0.4}],
        "cost": {"total_usd": 1.0},
        "schedule": {"period_h": 0.05, "offers": [OFFER, "aws/us-west-2/p5.48xlarge"],  # 3-minute periods
                     "demand_rps": [2.0, 2.0],
                     "spot": [[0.0, 1.0], [0.0, 0.0]],
                     "on_demand": [[1.0, 0.0], [0.0, 1.0]]},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    timeline = tmp_path / "timeline.csv"
    d = as_json(simulate(cli, azure, "--schedule", path, "--cold-start-s", "30", "--spot-availability", "1",
                         "--json", "--timeline", timeline))
    check_accounting(d)
    assert d["strategy"] == "schedule"
    # counts summed over the plan's offers; the reservation held throughout
    assert d["instances_launched"] == {"reserved": 1, "on_demand": 1, "spot": 1}
    assert d["cost_by_tier"]["reserved"] > 0 and d["cost_by_tier"]["spot"] > 0
    _, rows = read_timeline(timeline)
    by_t = {float(r["t_s"]): r for r in rows}
    assert by_t[120.0]["serving_spot"] == "0" and by_t[180.0]["serving_spot"] == "1"


@pytest.mark.parametrize("policy", ["static-peak", "reactive", "rolling", "budget"])
def test_named_policies(cli, azure, policy):
    extra = ("--budget-usd-per-hour", "120") if policy == "budget" else ()
    d = as_json(simulate(cli, azure, "--policy", policy, *extra, "--json"))
    check_accounting(d)
    assert d["strategy"] == policy
    assert d["requests"] == N_AZURE and d["completed"] == N_AZURE
    assert sum(d["instances_launched"].values()) >= 1


def test_budget_policy_needs_a_budget(cli, user_error, azure):
    user_error(simulate(cli, azure, "--policy", "budget"), "--budget-usd-per-hour")


# ------------------------------------------------------------------------------------------------ budgets

# Llama-3.1-70B (TP4, two engines per p5.48xlarge) at 20x the Azure trace, 40 req/s: reactive scaling starts
# with two on-demand instances ($55.04/h each) and adds two more that boot too late to matter in 5 minutes.
BIG = ("--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "4", "--precision", "fp8", "--offer", OFFER,
       "--rate-multiply", "20")


RATE_ABS = 2 * 1e-4 / 60 * 3600  # two roundings to $0.0001 over a 60 s control interval, in $/h


def big_run(cli, azure, tmp_path, *args) -> tuple[dict, list[float]]:
    """The run's JSON and its spend rate over every control interval (from the timeline's cost, written to
    $0.0001: within RATE_ABS of the true rate)."""
    timeline = tmp_path / "timeline.csv"
    d = as_json(cli("simulate", "--trace", azure, *BIG, *args, "--json", "--timeline", timeline))
    check_accounting(d)
    _, rows = read_timeline(timeline)
    rates = [(float(b["cost_usd"]) - float(a["cost_usd"])) / (float(b["t_s"]) - float(a["t_s"])) * 3600
             for a, b in itertools.pairwise(rows)]
    return d, rates


def test_budget_holds_at_every_cap_and_binds_on_slo(cli, azure, tmp_path):
    free, free_rates = big_run(cli, azure, tmp_path, "--policy", "reactive")
    assert free["budget_usd_per_hour"] is None
    assert free["usd_per_hour_peak"] >= max(free_rates) - RATE_ABS and free["usd_per_hour_peak"] > 3 * 55.04
    # one on-demand instance, one reserved, two of the four on-demand reactive runs at its peak, above that
    for cap, reserved in [(60.0, 0), (60.0, 1), (120.0, 0), (1000.0, 0)]:
        d, rates = big_run(cli, azure, tmp_path, "--policy", "budget", "--budget-usd-per-hour", str(cap),
                           "--reserved", str(reserved))
        assert d["budget_usd_per_hour"] == cap
        assert max(rates) <= cap + RATE_ABS and d["usd_per_hour_peak"] <= cap * (1 + 1e-9)
        assert d["usd_per_hour_mean"] == pytest.approx(d["cost_usd"] / d["duration_s"] * 3600, rel=1e-4)
        assert d["instances_launched"]["reserved"] == reserved
        if cap < 2 * 55.04:  # less than the starting fleet sized for the first five minutes
            assert d["slo_attainment"] < free["slo_attainment"] - 0.5
        elif cap < free["usd_per_hour_peak"]:  # only the late additions are cut: they cost, but never served
            assert d["cost_usd"] < free["cost_usd"] and d["slo_attainment"] == free["slo_attainment"]
        else:  # a budget that never binds changes nothing
            assert (d["slo_attainment"], d["cost_usd"]) == (free["slo_attainment"], free["cost_usd"])


def test_budget_in_text_output(cli, azure):
    res = cli("simulate", "--trace", azure, *BIG, "--policy", "budget", "--budget-usd-per-hour", "120")
    assert res.code == 0, res.err
    text = flat(res.out)
    assert re.search(r"budget \$/h\s+\$120\.00", text) and re.search(r"\$/h mean/peak\s+\$110\.08 / \$110\.08", text)
    assert "budget $120.00/h: spent $110.08/h on average, $110.08/h at the peak" in text


@pytest.mark.parametrize(("argv", "code", "needles"), [
    (("--budget-usd-per-hour", "0.01"), 3, ("--budget-usd-per-hour 0.01", "buys no instance", "$55.04/h")),
    (("--budget-usd-per-hour", "30"), 3, ("buys no instance", "$55.04/h", "--reserved 1", "$23.78/h")),
    (("--budget-usd-per-hour", "40", "--reserved", "2"), 2, ("--reserved 2", "$47.55/h", "--budget-usd-per-hour 40",
                                                              "--reserved 1 fits")),
], ids=["below-one-instance", "below-one-on-demand", "reserved-over-the-budget"])
def test_a_budget_that_cannot_hold_is_one_line(cli, user_error, azure, argv, code, needles):
    res = simulate(cli, azure, "--offer", OFFER, "--policy", "budget", *argv)
    user_error(res, *needles)
    assert res.code == code and res.out == ""


def test_a_budget_for_another_policy_is_refused(cli, user_error, azure):
    user_error(simulate(cli, azure, "--policy", "reactive", "--budget-usd-per-hour", "100"),
               "--budget-usd-per-hour", "--policy budget")
    user_error(simulate(cli, azure, "--budget-usd-per-hour", "100"), "--budget-usd-per-hour")
    user_error(compare(cli, azure, "--strategies", "reactive", "--budget-usd-per-hour", "100"),
               "--budget-usd-per-hour", "--strategies")


def test_unknown_policy_lists_the_valid_ones(cli, user_error, azure):
    line = user_error(simulate(cli, azure, "--policy", "yolo"), "yolo")
    for name in STRATEGY_NAMES:
        assert name in line


@pytest.mark.parametrize("argv", [
    ("--replicas", "2", "--policy", "reactive"),
    ("--replicas", "2", "--schedule", "SCHED"),
    ("--schedule", "SCHED", "--policy", "rolling"),
    ("--replicas", "2", "--schedule", "SCHED", "--policy", "static-peak"),
], ids=["replicas+policy", "replicas+schedule", "schedule+policy", "all-three"])
def test_fleet_sources_are_exclusive(cli, user_error, azure, tmp_path, argv):
    sched = tmp_path / "s.csv"
    sched.write_text("time_s,on_demand\n0,1\n")
    argv = tuple(str(sched) if a == "SCHED" else a for a in argv)
    line = user_error(simulate(cli, azure, *argv), "give one of")
    given = [a for a in argv if a.startswith("--")]
    for opt in given:
        assert opt in line


# ---------------------------------------------------------------------------------------- spot preemption


def test_replayed_notices_by_drain_strategy(cli, busy, replay):
    """The same two notices: 'drain' keeps work that finishes within the warning, 'migrate' moves it all with its
    output so far, 'requeue' restarts the same requests from their prompts."""
    runs = {}
    for drain in ("drain", "migrate", "requeue"):
        d = as_json(simulate(cli, busy, "--replicas", "16", "--spot-fraction", "0.5", "--spot-availability", "1",
                             "--preemptions", replay, "--drain", drain, "--json", generic=True))
        check_accounting(d)
        assert d["requests"] == d["completed"] == N_BUSY
        assert d["preemptions"] == 2
        assert d["instances_launched"]["spot"] == 3  # the first spot instance and two replacements
        runs[drain] = d
    moved = runs["migrate"]["migrated"]
    assert moved > 0 and runs["migrate"]["requeued"] == 0
    assert runs["requeue"]["requeued"] == moved and runs["requeue"]["migrated"] == 0
    assert runs["drain"]["requeued"] == 0 and runs["drain"]["migrated"] < moved


def test_sampled_preemptions(cli, busy):
    d = as_json(simulate(cli, busy, "--replicas", "16", "--spot-fraction", "0.5", "--preemption-rate-per-hour",
                         "20", "--drain", "migrate", "--json", generic=True))
    check_accounting(d)
    assert d["preemptions"] > 0
    assert d["migrated"] > 0 and d["requeued"] == 0
    assert d["instances_launched"]["spot"] + d["spot_fallbacks"] > 1  # replacements were requested
    assert d["cost_by_tier"]["spot"] > 0
    assert d["completed"] == N_BUSY


def test_no_spot_instances_means_no_notices(cli, busy, replay):
    d = as_json(simulate(cli, busy, "--replicas", "16", "--preemptions", replay, "--drain", "migrate", "--json",
                         generic=True))
    assert d["preemptions"] == 0 and d["migrated"] == 0
    assert d["instances_launched"]["spot"] == 0


# ----------------------------------------------------------------------------------------- priority classes


def test_priorities_give_per_class_stats(cli, azure):
    d = as_json(simulate(cli, azure, "--priorities", "batch=0.3,interactive=0.7", "--json"))
    check_accounting(d)
    classes = d["by_class"]
    assert [c["name"] for c in classes] == ["interactive", "batch"]  # priority order, not the order given
    assert sum(c["requests"] for c in classes) == N_AZURE
    assert 0.6 < classes[0]["requests"] / N_AZURE < 0.8
    for c in classes:
        assert set(c) >= {"name", "requests", "completed", "ttft_ms", "tpot_ms", "slo_attainment"}
        assert set(c["ttft_ms"]) == PCT_KEYS
    assert sum(c["completed"] for c in classes) == d["completed"]


def test_priorities_in_text_output(cli, azure):
    res = simulate(cli, azure, "--priorities", "interactive=0.7,batch=0.3")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    assert re.search(r"interactive: [\d,]+ requests, TTFT p95", text)
    assert re.search(r"batch: [\d,]+ requests, TTFT p95", text)


@pytest.mark.parametrize(("value", "needles"), [
    ("interactive=0.7,vip=0.3", ("--priorities", "vip", "interactive")),
    ("interactive", ("--priorities", "name=share")),
    ("interactive=lots", ("--priorities", "interactive=lots")),
    ("interactive=1.2,batch=-0.2", ("--priorities", ">= 0")),
    ("interactive=0,batch=0", ("--priorities", "not all zero")),
], ids=["unknown-class", "no-share", "share-not-a-number", "negative-share", "all-zero"])
def test_bad_priorities_are_one_line(cli, user_error, azure, value, needles):
    user_error(simulate(cli, azure, "--priorities", value), *needles)


# ------------------------------------------------------------------------------------- report and timeline


def _first_png(html: str) -> bytes:
    match = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert match, "no embedded PNG"
    return base64.b64decode(match.group(1))


def test_report_and_timeline(cli, busy, replay, tmp_path):
    report, timeline = tmp_path / "run.html", tmp_path / "run.csv"
    d = as_json(simulate(cli, busy, "--replicas", "16", "--spot-fraction", "0.5", "--preemptions", replay,
                         "--drain", "migrate", "--priorities", "interactive=0.7,batch=0.3", "--control-interval",
                         "30s", "--report", report, "--timeline", timeline, "--json", generic=True))
    html = report.read_text(encoding="utf-8")
    assert "<html" in html.lower()
    assert html.count("<img") >= 4  # fleet vs demand, latency, cost, preemptions
    assert _first_png(html).startswith(PNG_MAGIC)
    for section in ("Summary", "By priority class", "Fleet vs demand", "Latency", "Cost", "Spot preemptions"):
        assert section in html
    header, rows = read_timeline(timeline)
    assert header == TIMELINE_HEADER
    assert len(rows) == math.floor(d["duration_s"] / 30) + 1  # one row per control interval
    assert [float(r["t_s"]) for r in rows] == [30.0 * k for k in range(len(rows))]
    cost = [float(r["cost_usd"]) for r in rows]
    assert cost == sorted(cost) and cost[-1] <= d["cost_usd"] + 1e-6
    # the arrivals the timeline saw are the trace's (up to the last tick)
    seen = sum(float(r["arrivals_rps"]) * 30 for r in rows)
    assert seen == pytest.approx(N_BUSY, rel=0.05)
    assert all(int(r["serving_on_demand"]) >= 1 for r in rows)


def test_report_in_text_mode_says_where_it_wrote(cli, azure, tmp_path):
    report = tmp_path / "r.html"
    res = simulate(cli, azure, "--report", report)
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert f"wrote {report}" in flat(res.err)
    assert _first_png(report.read_text(encoding="utf-8")).startswith(PNG_MAGIC)


@pytest.mark.parametrize(("argv", "needles"), [
    (("--report", "NODIR/r.html"), ("r.html", "directory")),
    (("--timeline", "NODIR/t.csv"), ("t.csv", "directory")),
    (("--report", "foo.txt"), ("foo.txt", "--report", "html")),
], ids=["report-missing-dir", "timeline-missing-dir", "report-not-html"])
def test_output_paths_are_checked_before_any_work(cli, user_error, tmp_path, argv, needles):
    # The trace does not exist either: the output path must be the first complaint.
    argv = tuple(a.replace("NODIR", str(tmp_path / "nodir")) for a in argv)
    user_error(cli("simulate", "--trace", tmp_path / "no-trace.csv", *FLEET, *argv), *needles)
    assert not (tmp_path / "foo.txt").exists()


def test_compare_report_path_is_checked_first(cli, user_error, tmp_path):
    user_error(cli("compare", "--trace", tmp_path / "no-trace.csv", *FLEET, "--report", tmp_path / "no" / "c.html"),
               "c.html", "directory")


# -------------------------------------------------------------------------------------------------- compare


def test_compare_json_one_entry_per_strategy_in_order(cli, azure, tmp_path):
    report = tmp_path / "compare.html"
    order = ["reactive", "static-peak", "rolling"]
    out = as_json(compare(cli, azure, "--strategies", ",".join(order), "--json", "--report", report))
    assert OFFER in out["fleet"]
    assert [s["strategy"] for s in out["strategies"]] == order
    for s in out["strategies"]:
        check_accounting(s)
        assert s["requests"] == N_AZURE
    html = report.read_text(encoding="utf-8")
    for name in order:
        assert name in html
    assert _first_png(html).startswith(PNG_MAGIC)


def test_compare_default_strategies_text(cli, azure):
    res = compare(cli, azure)
    assert res.code == 0 and "Traceback" not in res.err, res.err
    text = flat(res.out)
    assert "fleetwise compare" in text
    for name in ("static-peak", "reactive", "rolling"):
        assert f"{name}:" in text


def test_compare_unknown_strategy_lists_the_valid_ones(cli, user_error, azure):
    line = user_error(compare(cli, azure, "--strategies", "static-peak,yolo"), "yolo")
    for name in STRATEGY_NAMES:
        assert name in line


@pytest.mark.parametrize(("argv", "needles"), [
    (("--strategies", "reactive,budget"), ("budget", "--budget-usd-per-hour")),
    (("--strategies", " , "), ("--strategies",)),
], ids=["budget-without-budget", "no-strategies"])
def test_compare_bad_strategies(cli, user_error, azure, argv, needles):
    user_error(compare(cli, azure, *argv), *needles)


def test_compare_json_shape_does_not_depend_on_the_number_of_strategies(cli, azure):
    out = as_json(compare(cli, azure, "--strategies", "reactive", "--json"))
    assert [s["strategy"] for s in out["strategies"]] == ["reactive"]


# --------------------------------------------------------------------------------------------------- errors


@pytest.fixture
def bad_files(tmp_path, busy) -> Path:
    rows = _busy_rows()
    for k in range(10, 600, 10):  # 59 of 2,000 rows (3 %) have a non-numeric input length
        rows[k] = rows[k].split(",")[0] + ",abc,5"
    (tmp_path / "badrows.csv").write_text("arr,inp,out\n" + "\n".join(rows) + "\n")
    (tmp_path / "rate.csv").write_text("time,value\n0,1.5\n60,2.5\n120,3.5\n")
    (tmp_path / "sched_count.csv").write_text("time_s,reserved,on_demand,spot\n0,0,1,0\n60,0,two,0\n")
    (tmp_path / "sched_time.csv").write_text("time_s,on_demand\n0,1\nsoon,2\n")
    (tmp_path / "sched_order.csv").write_text("time_s,on_demand\n60,1\n0,2\n")
    (tmp_path / "sched_cols.csv").write_text("when,machines\n0,1\n")
    (tmp_path / "sched_neg.csv").write_text("time_s,on_demand\n0,-1\n")
    (tmp_path / "sched_bad.json").write_text('{"schedule": {"period_h": 1}}')
    (tmp_path / "notices_text.csv").write_text("t_s\n60\nsoon\n")
    (tmp_path / "notices_neg.csv").write_text("-5\n")
    return tmp_path


# (id, argv, substrings of the one-line message; TRACE = the busy trace with its column options)
ERRORS = [
    ("missing-trace", ("--trace", "F/no-such-trace.csv"), ("no-such-trace.csv", "no such file")),
    ("bad-rows", ("--trace", "F/badrows.csv", *GENERIC_COLS), ("badrows.csv", "59 bad row", "--max-bad-rows",
                                                                "line 12", "inp")),
    ("rate-series", ("--trace", "F/rate.csv"), ("rate.csv", "rate series", "simulate needs requests")),
    ("unknown-router", ("TRACE", "--router", "fastest"), ("router", "fastest", "least-work", "p2c")),
    ("unknown-drain", ("TRACE", "--drain", "panic"), ("drain", "panic", "migrate", "requeue")),
    ("negative-cold-start", ("TRACE", "--cold-start-s", "-1"), ("--cold-start-s", ">= 0")),
    ("replicas-0", ("TRACE", "--replicas", "0"), ("--replicas", ">= 1")),
    ("unknown-offer", ("TRACE", "--offer", "aws/nowhere/p9.huge"), ("aws/nowhere/p9.huge",)),
    ("offer-of-another-gpu", ("TRACE", "--offer", "aws/us-east-1/g6.xlarge"), ("g6.xlarge", "h100-sxm")),
    ("schedule-count", ("TRACE", "--schedule", "F/sched_count.csv"), ("sched_count.csv", "line 3", "on_demand",
                                                                      "'two'", "not a number")),
    ("schedule-time", ("TRACE", "--schedule", "F/sched_time.csv"), ("sched_time.csv", "line 3", "time_s", "soon")),
    ("schedule-order", ("TRACE", "--schedule", "F/sched_order.csv"), ("sched_order.csv", "increase")),
    ("schedule-columns", ("TRACE", "--schedule", "F/sched_cols.csv"), ("sched_cols.csv", "time_s")),
    ("schedule-negative", ("TRACE", "--schedule", "F/sched_neg.csv"), ("sched_neg.csv", "line 2", ">= 0")),
    ("schedule-missing", ("TRACE", "--schedule", "F/nope.csv"), ("nope.csv", "not found")),
    ("schedule-json", ("TRACE", "--schedule", "F/sched_bad.json"), ("sched_bad.json", "optimize --json")),
    ("notices-text", ("TRACE", "--preemptions", "F/notices_text.csv"), ("notices_text.csv", "line 3", "soon")),
    ("notices-negative", ("TRACE", "--preemptions", "F/notices_neg.csv"), ("notices_neg.csv", "line 1", ">= 0")),
    ("notices-missing", ("TRACE", "--preemptions", "F/nope.txt"), ("nope.txt", "not found")),
    ("negative-rate", ("TRACE", "--preemption-rate-per-hour", "-1"), ("preemption rate", ">= 0")),
    ("spot-availability", ("TRACE", "--spot-availability", "1.5"), ("spot availability",)),
    ("spot-fraction", ("TRACE", "--replicas", "8", "--spot-fraction", "1.5"), ("spot fraction",)),
    ("time-compress-0", ("TRACE", "--time-compress", "0"), ("compression", "positive")),
    ("rate-multiply-0", ("TRACE", "--rate-multiply", "0"), ("multiplier", "positive")),
    ("control-interval", ("TRACE", "--control-interval", "often"), ("--control-interval", "often")),
]


@pytest.mark.parametrize(("argv", "needles"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_input_is_one_line(cli, user_error, bad_files, busy, argv, needles):
    args: list = []
    for a in argv:
        if a == "TRACE":
            args += ["--trace", busy, *GENERIC_COLS]
        else:
            args.append(a.replace("F/", f"{bad_files}/") if isinstance(a, str) else a)
    user_error(cli("simulate", *FLEET, *args), *needles)


def test_a_gpu_without_offers_is_infeasible_exit_3(cli, user_error, busy):
    res = simulate(cli, busy, "--gpu", "gb200", generic=True)
    user_error(res, "gb200", "no catalog offer")
    assert res.code == 3


def test_a_few_bad_rows_are_skipped_with_a_warning(cli, bad_files):
    res = cli("simulate", "--trace", bad_files / "badrows.csv", *GENERIC_COLS, *FLEET, "--max-bad-rows", "0.05",
              "--json")
    d = as_json(res)
    assert d["requests"] == N_BUSY - 59
    assert "warning" in res.err and "badrows.csv" in res.err


def test_console_script_bad_schedule(script, user_error, bad_files):
    res = script("simulate", *FLEET, "--schedule", bad_files / "sched_count.csv")
    user_error(res, "sched_count.csv", "line 3")
    assert res.code == 2 and res.out == ""


# ------------------------------------------------------------------- regressions (bugs the first tests found)


def test_schedule_row_with_an_extra_cell_is_one_line(cli, user_error, busy, tmp_path):
    sched = tmp_path / "extra.csv"
    sched.write_text("time_s,on_demand\n0,1,5\n")
    user_error(simulate(cli, busy, "--schedule", sched, generic=True), "extra.csv")


def test_schedule_time_nan_is_rejected(cli, user_error, busy, tmp_path):
    sched = tmp_path / "nan.csv"
    sched.write_text("time_s,on_demand\n0,1\nnan,2\n")
    user_error(simulate(cli, busy, "--schedule", sched, generic=True), "nan.csv", "time_s")


def test_optimize_json_with_flat_lists_is_one_line(cli, user_error, busy, tmp_path):
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"schedule": {"period_h": 1, "offers": [OFFER], "spot": [0, 1],
                                             "on_demand": [1, 1]}}))
    user_error(simulate(cli, busy, "--schedule", path, generic=True), "flat.json")


def test_optimize_json_with_a_null_count_is_one_line(cli, user_error, busy, tmp_path):
    path = tmp_path / "null.json"
    path.write_text(json.dumps({"schedule": {"period_h": 1, "offers": [OFFER], "spot": [[None, 1]],
                                             "on_demand": [[1, 1]]}}))
    user_error(simulate(cli, busy, "--schedule", path, generic=True), "null.json")


def test_schedule_with_spot_gets_an_offer_with_spot(cli, azure, tmp_path):
    sched = tmp_path / "spot.csv"
    sched.write_text("time_s,on_demand,spot\n0,1,1\n")
    cmd = ("simulate", "--trace", azure, "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "1",
           "--precision", "fp8", "--spot-availability", "1", "--schedule", sched, "--json")  # no --cloud
    d = as_json(cli(*cmd))
    assert d["spot_fallbacks"] == 0
    assert d["instances_launched"]["spot"] == 1 and d["cost_by_tier"]["spot"] > 0


def test_an_over_context_request_in_a_small_trace_is_dropped_not_fatal(cli, tmp_path):
    lines = [f"2023-11-16 18:00:{i:02d},500,100" for i in range(4)] + ["2023-11-16 18:00:30,200000,10"]
    d = as_json(simulate(cli, write_azure(tmp_path / "small.csv", lines), "--json"))
    assert d["dropped_by_reason"] == {"exceeds_context": 1} and d["completed"] == 4


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_result_other_seed_other_result(cli, busy):
    args = ("--replicas", "16", "--spot-fraction", "0.5", "--preemption-rate-per-hour", "20", "--drain", "migrate",
            "--json")
    a = as_json(simulate(cli, busy, *args, "--seed", "3", generic=True))
    b = as_json(simulate(cli, busy, *args, "--seed", "3", generic=True))
    c = as_json(simulate(cli, busy, *args, "--seed", "4", generic=True))
    assert without_wall_time(a) == without_wall_time(b)
    assert without_wall_time(a) != without_wall_time(c)
    assert a["requests"] == c["requests"] == N_BUSY


def test_same_seed_prints_identical_json(cli, azure):
    first = simulate(cli, azure, "--seed", "7", "--json")
    second = simulate(cli, azure, "--seed", "7", "--json")
    assert first.code == second.code == 0
    assert first.out == second.out


def test_time_compress_doubles_the_rate(cli, azure):
    base = simulate(cli, azure, "--json")
    fast = simulate(cli, azure, "--time-compress", "2", "--json")
    a, b = as_json(base), as_json(fast)
    assert a["requests"] == b["requests"] == N_AZURE
    assert b["duration_s"] / a["duration_s"] == pytest.approx(0.5, abs=0.03)
    assert b["goodput_rps"] / a["goodput_rps"] == pytest.approx(2.0, rel=0.06)
    assert "over 5.0 min" in flat(base.err) and "over 2.5 min" in flat(fast.err)


def test_rate_multiply_copies_requests(cli, azure):
    d = as_json(simulate(cli, azure, "--rate-multiply", "2", "--json"))
    assert d["requests"] == 2 * N_AZURE
    check_accounting(d)


# ------------------------------------------------------------------------------------ the default workload


def test_default_synthetic_workload(cli):
    res = cli("simulate", "--json")
    d = as_json(res)
    check_accounting(d)
    assert "no TRACE given" in flat(res.err)
    assert 60_000 < d["requests"] < 80_000  # about 20 req/s for an hour
    assert d["duration_s"] >= 3600 * 0.98
    assert d["strategy"] == "static-peak"
    assert "llama-3.1-70b" in flat(res.err)
