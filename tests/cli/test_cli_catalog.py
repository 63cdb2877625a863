"""``fleetwise catalog``: every section as a table and as JSON, and the named seed-scenario catalog."""

from __future__ import annotations

import json

import pytest

EXPECTED = {  # one id each section must list (offers: the short id in tables, the full id in JSON)
    "gpus": "h100-sxm",
    "models": "llama-3.1-70b",
    "precisions": "fp8",
    "offers": "aws:p5.48xlarge",
}
JSON_IDS = {**EXPECTED, "offers": "aws/us-east-1/p5.48xlarge"}


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
    assert JSON_IDS[section] in ids
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


def test_catalog_quality_lists_sourced_figures(cli):
    rows = json.loads(cli("catalog", "quality", "--json").out)
    by_key = {(r["precision"], r["models"]): r for r in rows}
    assert by_key[("int4", "llama-3.1-70b")]["drop_pct"] == pytest.approx(2.6)
    assert by_key[("bf16", "*")]["drop_pct"] == 0.0
    assert all(r["source"] and r["as_of"] for r in rows)
    fp4 = {r["models"] for r in rows if r["precision"] == "fp4"}
    assert not any("llama" in m for m in fp4), fp4  # no published NVFP4 figure for the Llama entries
    res = cli("catalog", "quality")
    assert res.code == 0 and "llama-3.1-70b" in res.out


def test_catalog_offers_fit_80_columns_through_a_pipe(fleetwise_exe):
    import os
    import subprocess

    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    env.pop("FLEETWISE_CATALOG", None)
    proc = subprocess.run([fleetwise_exe, "catalog", "offers"], check=False, capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    assert "…" not in proc.stdout
    header = next(line for line in lines if "on_demand" in line)
    for column in ("offer", "region", "gpu", "on_demand"):
        assert column in header, header
    assert "azure:Standard_ND96isr_H100_v5" in proc.stdout  # the longest ids stay whole
