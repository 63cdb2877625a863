"""``fleetwise plan``: the recommendation, the JSON/CSV outputs and the views.

A plan search costs seconds, so every test but one restricts the search with filters (one GPU type,
one cloud, one or two precisions); the full default search runs once, through the real console script.
"""

from __future__ import annotations

import csv
import json
import re

import pytest

# Filters that keep a plan search well under a second (TP1 and TP8 replicas are the slow ones to simulate).
FAST = ("--gpu", "h100", "--cloud", "aws", "--precision", "fp8", "--tp", "4")
WORKLOAD = ("--model", "llama-3.1-70b", "--isl", "1000", "--osl", "250")
CANDIDATE_KEYS = {
    "model", "gpu", "num_gpus", "tp", "precision", "max_batch", "goodput_rps", "replicas", "usd_per_hour",
    "usd_per_1m_output_tokens", "slo_ttft_ms", "slo_tpot_ms", "offer",
}

_RECOMMENDATION = re.compile(
    r"Recommendation:.*? on (?P<gpu>[A-Za-z0-9][\w.-]*) .*?\$(?P<usd>\d[\d,]*(?:\.\d+)?)\s*/\s*hour"
)


def _flat(text: str) -> str:
    """Rich wraps long lines at the terminal width; join them back for matching."""
    return " ".join(text.split())


def _json(res) -> dict:
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    return json.loads(res.out)


def _gpu_ids() -> set[str]:
    from fleetwise.catalog import load_catalog

    return set(load_catalog().gpus)


def test_plan_without_arguments_recommends_a_gpu_and_an_hourly_price(script):
    """The one full (unfiltered) search of the suite, through the installed console script."""
    res = script("plan")
    assert res.code == 0, res.err
    assert "Traceback" not in res.out + res.err
    match = _RECOMMENDATION.search(_flat(res.out))
    assert match, f"no Recommendation line naming a GPU and a $/hour in:\n{res.out}"
    assert match["gpu"] in _gpu_ids(), match.group(0)
    assert float(match["usd"].replace(",", "")) > 0
    # The defaults are redundancy, headroom and a 1% quality limit: never one replica, never a 4-bit format
    # without a published figure within 1% for llama-3.1-70b (int4 drops 2.6%, fp4 has none).
    rec = re.search(r"Recommendation: (\d+) replicas? of \S+ (\S+) on", _flat(res.out))
    assert rec and int(rec[1]) >= 2 and rec[2] not in ("fp4", "int4"), rec and rec.group(0)
    each = re.search(r"each replica at (\d+)% of its goodput", _flat(res.out))
    assert each and int(each[1]) <= 80, _flat(res.out)


# bf16 at TP1 cannot fit a 70B model on an H100, so the answer has a rejected configuration too.
_SLO_ARGS = (*WORKLOAD, "--rate", "20", "--ttft-p95-ms", "1000", "--tpot-p95-ms", "50", "--json",
             "--gpu", "h100", "--cloud", "aws", "--precision", "fp8,bf16", "--tp", "1,4")
_cache: dict[tuple, dict] = {}


@pytest.fixture
def slo_plan(cli) -> dict:
    if _SLO_ARGS not in _cache:
        _cache[_SLO_ARGS] = _json(cli("plan", *_SLO_ARGS))
    return _cache[_SLO_ARGS]


def test_plan_json_lists_ranked_candidates_with_every_field(slo_plan):
    cands = slo_plan["candidates"]
    assert cands, "no candidates"
    for c in cands:
        assert CANDIDATE_KEYS <= set(c), CANDIDATE_KEYS - set(c)
        assert c["model"] == "llama-3.1-70b"
        assert c["gpu"] == "h100-sxm"
        assert c["precision"] in ("fp8", "bf16")
        assert c["num_gpus"] >= c["tp"] >= 1
        assert c["replicas"] >= 1 and c["max_batch"] >= 1
        assert c["usd_per_hour"] > 0 and c["usd_per_1m_output_tokens"] > 0
    prices = [c["usd_per_hour"] for c in cands]
    assert prices == sorted(prices), "candidates are not ranked by usd_per_hour ascending"


def test_plan_json_candidates_meet_the_slo_and_the_rate(slo_plan):
    for c in slo_plan["candidates"]:
        assert c["slo_ttft_ms"] <= 1000, c
        assert c["slo_tpot_ms"] <= 50, c
        assert c["goodput_rps"] * c["replicas"] >= 20 * (1 - 1e-6), c


def test_plan_json_reports_rejected_configurations_with_a_reason(slo_plan):
    rejected = slo_plan["rejected"]
    assert isinstance(rejected, list)
    assert rejected, "70B bf16 on one H100 cannot fit, so at least one configuration must be rejected"
    for r in rejected:
        assert set(r) >= {"config", "reason"}
        assert r["config"].strip() and r["reason"].strip()
    assert any("TP1" in r["config"] and "bf16" in r["config"] for r in rejected), rejected


def test_higher_rate_is_never_cheaper(cli):
    best = {}
    for rate in (5, 40):
        data = _json(cli("plan", *WORKLOAD, "--gpu", "h100", "--cloud", "aws", "--precision", "fp8",
                         "--tp", "2,4", "--rate", str(rate), "--json"))
        assert data["candidates"], f"no candidate at rate {rate}"
        best[rate] = data["candidates"][0]["usd_per_hour"]
    assert best[40] >= best[5], best


def test_plan_csv_writes_every_ranked_candidate(cli):
    res = cli("plan", *FAST, "--csv", "out.csv")
    assert res.code == 0, res.err
    assert "Recommendation" in res.out
    with open("out.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, data = rows[0], rows[1:]
    assert {"model", "gpu", "tp", "precision", "usd_per_hour", "offer"} <= set(header), header
    assert len(data) >= 1
    usd = [float(r[header.index("usd_per_hour")]) for r in data]
    assert usd == sorted(usd)
    assert all(len(r) == len(header) for r in data)


VIEW_FILTERS = {
    "gpu": ("--gpu", "h100,a100", "--cloud", "aws", "--precision", "fp8", "--tp", "4"),
    "precision": ("--gpu", "h100", "--cloud", "aws", "--precision", "fp8,bf16", "--tp", "4"),
    "batch": FAST,
}


@pytest.mark.parametrize("view", ["gpu", "precision", "batch"])
def test_plan_views_render(cli, view):
    res = cli("plan", *VIEW_FILTERS[view], "--view", view)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    assert "Recommendation" in res.out


@pytest.mark.parametrize("view", ["gpu", "precision", "batch"])
def test_plan_views_json(cli, view):
    data = _json(cli("plan", *VIEW_FILTERS[view], "--view", view, "--json"))
    cands = data["candidates"]
    assert cands
    if view in ("gpu", "precision"):  # the best configuration per GPU / per precision: one row each
        keys = [c[view] for c in cands]
        assert len(keys) == len(set(keys)), keys
        prices = [c["usd_per_hour"] for c in cands]
        assert prices == sorted(prices)
    else:  # the batch-cap sweep of one configuration on one offer, by batch cap
        assert len({(c["model"], c["gpu"], c["tp"], c["precision"], c["offer"]) for c in cands}) == 1
        caps = [c["max_batch"] for c in cands]
        assert caps == sorted(caps) and len(caps) > 1
        assert min(c["usd_per_hour"] for c in cands) == pytest.approx(
            _json(cli("plan", *FAST, "--json"))["candidates"][0]["usd_per_hour"])


# --- headroom, redundancy, quality, confidence -------------------------------------------------------------------
NEW_KEYS = {"load_per_replica", "survives_one_loss", "survives_instance_loss", "quality_drop_pct", "quality_source",
            "quality_as_of", "confidence", "error_band_pct", "error_band_source"}


def test_plan_json_defaults_are_two_replicas_at_most_80_percent(slo_plan):
    assert slo_plan["min_replicas"] == 2 and slo_plan["max_load"] == 0.8
    assert slo_plan["max_quality_drop_pct"] == 1.0 and slo_plan["confidence_filter"] == "any"
    for c in slo_plan["candidates"]:
        assert NEW_KEYS <= set(c), NEW_KEYS - set(c)
        assert c["replicas"] >= 2, c
        assert c["load_per_replica"] <= 0.8 + 1e-6, c
        assert c["load_per_replica"] == pytest.approx(20 / (c["replicas"] * c["goodput_rps"]), rel=1e-4)
        assert c["survives_one_loss"] == (20 <= (c["replicas"] - 1) * c["goodput_rps"] * (1 + 1e-6)), c
        assert c["confidence"] in ("measured", "interpolated", "extrapolated")


def test_plan_json_quality_is_the_published_figure_or_null(slo_plan):
    by_precision = {c["precision"]: c for c in slo_plan["candidates"]}
    assert by_precision["bf16"]["quality_drop_pct"] == 0.0
    assert by_precision["fp8"]["quality_drop_pct"] == pytest.approx(0.1)
    assert "huggingface.co" in by_precision["fp8"]["quality_source"] and by_precision["fp8"]["quality_as_of"]


def test_min_replicas_and_max_load_change_the_count(cli):
    base = ("plan", *FAST, *WORKLOAD, "--rate", "20", "--json")
    tight = _json(cli(*base, "--min-replicas", "1", "--max-load", "1"))["candidates"][0]
    roomy = _json(cli(*base, "--min-replicas", "4", "--max-load", "0.5"))["candidates"][0]
    assert tight["replicas"] == max(1, -(-20 // tight["goodput_rps"]))
    assert roomy["replicas"] >= 4 and roomy["load_per_replica"] <= 0.5 + 1e-6
    assert roomy["usd_per_hour"] >= tight["usd_per_hour"]


def test_unknown_quality_is_excluded_unless_named(cli):
    args = ("plan", "--gpu", "b200", "--cloud", "lambda", "--tp", "1", *WORKLOAD, "--json")
    default = _json(cli(*args))
    assert "fp4" not in {c["precision"] for c in default["candidates"]}
    assert any("fp4" in r["config"] and "unknown" in r["reason"] for r in default["rejected"])
    named = _json(cli(*args, "--precision", "fp4"))
    assert named["candidates"] and all(c["quality_drop_pct"] is None for c in named["candidates"])


def test_unknown_quality_shows_as_unknown_in_the_table(cli):
    res = cli("plan", "--gpu", "b200", "--cloud", "lambda", "--tp", "1", *WORKLOAD, "--precision", "fp4")
    assert res.code == 0, res.err
    assert "unknown" in res.out and "quality drop unknown" in _flat(res.out)


def test_confidence_measured_keeps_only_measured_rows(cli, measured_rows):
    data = _json(cli("plan", "--gpu", "h100,b200", "--cloud", "aws,lambda", "--tp", "4", *WORKLOAD,
                     "--confidence", "measured", "--json"))
    assert data["candidates"] and {c["confidence"] for c in data["candidates"]} == {"measured"}
    assert "b200" not in {c["gpu"] for c in data["candidates"]}  # no calibration point on Blackwell


def test_extrapolated_rows_are_marked_in_the_table(cli, measured_rows):
    res = cli("plan", "--gpu", "b200", "--cloud", "lambda", "--tp", "1", *WORKLOAD, "--precision", "fp8")
    assert res.code == 0, res.err
    assert re.search(r"^\s*1\*?!\s", res.out, re.MULTILINE), res.out
    assert "extrapolated" in res.out


@pytest.mark.parametrize("option, value", [
    ("--min-replicas", "0"), ("--min-replicas", "two"), ("--max-load", "0"), ("--max-load", "1.5"),
    ("--max-load", "nan"), ("--max-quality-drop", "-1"), ("--confidence", "sure"),
])
def test_bad_headroom_options_are_one_line_errors(cli, user_error, option, value):
    user_error(cli("plan", *FAST, option, value), option)


def _narrow(fleetwise_exe: str, *args: str) -> list[str]:
    """A command's output through a pipe with an 80-column terminal setting."""
    import os
    import subprocess

    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("FLEETWISE_CATALOG", None)
    env.pop("FLEETWISE_CATALOG_NAME", None)
    proc = subprocess.run([fleetwise_exe, *args], check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_plan_table_fits_80_columns_with_short_offer_ids(fleetwise_exe):
    lines = _narrow(fleetwise_exe, "plan", "--gpu", "h100", "--cloud", "aws", "--tp", "2,4", *WORKLOAD)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    table = "\n".join(lines)
    assert "…" not in table, table  # columns are dropped whole, never squeezed into ellipses
    assert "aws:p5.48xlarge" in table and "aws/us-east-1" not in table
    header = next(line for line in lines if "$/hour" in line)
    for column in ("GPUs", "prec", "repl", "offer", "load", "q.drop"):
        assert column in header, header
    assert "Hidden to fit 80 columns" in " ".join(lines)
