"""``fleetwise catalog``: every section as a table and as JSON, and the named seed-scenario catalog."""

from __future__ import annotations

import json

import pytest

EXPECTED = {  # one id each section must list
    "gpus": "h100-sxm",
    "models": "llama-3.1-70b",
    "precisions": "fp8",
    "offers": "aws/us-east-1/p5.48xlarge",
}


@pytest.mark.parametrize("section", list(EXPECTED))
def test_catalog_section_table(cli, section):
    res = cli("catalog", section)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    assert EXPECTED[section] in res.out


@pytest.mark.parametrize("section", list(EXPECTED))
def test_catalog_section_json(cli, section):
    res = cli("catalog", section, "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert isinstance(rows, list) and rows
    ids = [r["id"] for r in rows]
    assert EXPECTED[section] in ids
    assert len(ids) == len(set(ids))


def test_catalog_offers_cloud_filter(cli):
    rows = json.loads(cli("catalog", "offers", "--cloud", "aws", "--json").out)
    assert rows and all(r["id"].startswith("aws/") for r in rows)


def test_seed_scenario_offers(cli):
    res = cli("catalog", "--catalog", "seed-scenario", "offers", "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    ids = {r["id"] for r in rows}
    assert {"h100_8x", "a100_8x"} <= ids, ids
    by_id = {r["id"]: r for r in rows}
    assert by_id["h100_8x"]["gpu"] == "8xh100-sxm"
    assert by_id["a100_8x"]["gpu"] == "8xa100-80gb"
    assert all(r["on_demand"] and r["on_demand"] > 0 for r in rows)
