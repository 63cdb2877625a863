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
    "usd_per_1m_output_tokens", "p95_ttft_ms", "p95_tpot_ms", "offer",
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
        assert c["p95_ttft_ms"] <= 1000, c
        assert c["p95_tpot_ms"] <= 50, c
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
