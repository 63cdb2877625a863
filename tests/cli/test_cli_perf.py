"""``fleetwise perf`` (one replica, and --points files), ``validate`` and ``calibrate``."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

PERF_8B = ("--model", "llama-3.1-8b", "--gpu", "H100", "--gpus", "1", "--precision", "fp8",
           "--isl", "128", "--osl", "128")
PRED_COLUMNS = ("output_throughput", "request_throughput", "total_token_throughput", "mean_ttft_ms",
                "median_ttft_ms", "p99_ttft_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_tpot_ms",
                "median_tpot_ms", "p99_tpot_ms", "mean_e2e_ms", "status")


def _json(res) -> dict:
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    return json.loads(res.out)


# ---------------------------------------------------------------------------------------------- perf


def test_perf_offline_json(cli):
    data = _json(cli("perf", *PERF_8B, "--json"))
    assert data["mode"] == "offline"
    assert data["metrics"]["output_throughput"] > 0
    assert data["memory"]["kv_capacity_tokens"] > 0
    assert "h100-sxm" in data["replica"]  # the alias resolved


@pytest.mark.parametrize(
    ("option", "value", "mode"),
    [("--rate", "5", "rate"), ("--concurrency", "8", "concurrency"), ("--batch", "4", "static")],
)
def test_perf_load_modes(cli, option, value, mode):
    data = _json(cli("perf", *PERF_8B, option, value, "--json"))
    assert data["mode"] == mode
    m = data["metrics"]
    assert m["output_throughput"] > 0
    assert m["request_throughput"] > 0
    if mode == "rate":  # cannot complete requests faster than they arrive (allow Poisson noise)
        assert m["request_throughput"] <= 5 * 1.3
    if "mean_batch" in m and mode in ("concurrency", "static"):
        assert m["mean_batch"] <= float(value) + 1e-9


def test_perf_renders_a_table(cli):
    res = cli("perf", *PERF_8B)
    assert res.code == 0, res.err
    assert "kv_capacity_tokens" in res.out and "output_throughput" in res.out


def test_perf_rate_and_batch_together_is_a_one_line_error(cli, user_error):
    user_error(cli("perf", *PERF_8B, "--rate", "5", "--batch", "4"), "--rate", "--batch")


# ------------------------------------------------------------------------------------- perf --points

POINTS_HEADER = ["engine", "model", "gpu", "num_gpus", "tp", "precision", "isl", "osl", "mode", "rate_qps",
                 "batch", "note"]
POINTS_ROWS = [
    ["trtllm", "llama-3.1-8b", "h100-sxm", "1", "1", "fp8", "128", "128", "offline", "", "", "good offline"],
    ["trtllm", "llama-3.1-8b", "H100", "1", "1", "fp8", "1000", "250", "rate", "5", "", "good rate, alias"],
    ["trtllm", "no-such-model", "h100-sxm", "1", "1", "fp8", "128", "128", "offline", "", "",
     "unknown model"],
    ["trtllm", "llama-3.1-8b", "a100-80gb", "1", "1", "fp8", "128", "128", "offline", "", "",
     "fp8 on ampere"],
    ["trtllm", "llama-3.1-8b", "a100-80gb", "1", "1", "bf16", "128", "128", "static", "", "8", "good static"],
]
GOOD = {"good offline", "good rate, alias", "good static"}


@pytest.fixture
def points_file(tmp_path):
    path = tmp_path / "POINTS.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(POINTS_HEADER)
        writer.writerows(POINTS_ROWS)
    return path


def test_perf_points_writes_predictions(cli, points_file, tmp_path):
    out = tmp_path / "PRED.csv"
    res = cli("perf", "--points", points_file, "--out", out)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
        header = rows and list(rows[0])
    assert set(PRED_COLUMNS) <= set(header), header
    assert "note" in header
    notes = [r["note"] for r in rows]
    assert notes == [r[-1] for r in POINTS_ROWS], "the note column was not copied through in order"
    for r in rows:
        if r["note"] in GOOD:
            assert r["status"] == "ok", r
            for col in PRED_COLUMNS[:-1]:
                assert float(r[col]) > 0, (col, r)
        else:
            assert r["status"] and r["status"] != "ok", r
            assert all(r[col] == "" for col in PRED_COLUMNS[:-1]), r
    by_note = {r["note"]: r for r in rows}
    assert "no-such-model" in by_note["unknown model"]["status"]
    assert "fp8" in by_note["fp8 on ampere"]["status"]


def test_perf_points_to_stdout(cli, points_file):
    res = cli("perf", "--points", points_file)
    assert res.code == 0, res.err
    rows = list(csv.DictReader(res.out.splitlines()))
    assert len(rows) == len(POINTS_ROWS)
    assert [r["status"] == "ok" for r in rows] == [r[-1] in GOOD for r in POINTS_ROWS]


# ----------------------------------------------------------------------------------------- validate


@pytest.fixture
def measured_small(tmp_path, measured_rows, write_csv):
    """A few offline rows and one online (rate) case of the measured calibration data."""
    offline = [r for r in measured_rows if r["mode"] == "offline" and r["metric"] == "output_throughput"][:4]
    first_rate = next(r for r in measured_rows if r["mode"] == "rate")
    key = ("engine", "model", "gpu", "num_gpus", "tp", "precision", "isl", "osl", "rate_qps")
    rate = [r for r in measured_rows if r["mode"] == "rate" and all(r[k] == first_rate[k] for k in key)]
    return write_csv(tmp_path / "measured.csv", offline + rate)


def test_validate_prints_tiers(cli, measured_small):
    res = cli("validate", measured_small)
    assert res.code == 0, res.err
    assert "offline_throughput" in res.out
    assert "rate_ttft" in res.out or "rate_itl" in res.out


def test_validate_json(cli, measured_small):
    data = _json(cli("validate", measured_small, "--json"))
    tiers = {t["tier"]: t for t in data["tiers"]}
    assert "offline_throughput" in tiers
    assert tiers["offline_throughput"]["n"] == 4
    for t in data["tiers"]:
        assert t["mape"] is not None and t["mape"] >= 0
        assert t["worst"]


# ---------------------------------------------------------------------------------------- calibrate

# Offline cases that are cheap to simulate, so a 10-evaluation fit takes about a second.
CHEAP_CASES = [
    ("llama-3.1-70b", "h100-sxm", "4", "fp8", "128", "4096"),
    ("llama-3.1-8b", "l40s", "1", "fp8", "128", "4096"),
    ("llama-3.1-8b", "a100-80gb", "1", "fp16", "128", "4096"),
    ("llama-3.1-8b", "a100-80gb", "1", "fp16", "128", "2048"),
]


@pytest.fixture
def measured_four(tmp_path, measured_rows, write_csv):
    offline = [r for r in measured_rows if r["mode"] == "offline" and r["metric"] == "output_throughput"]
    rows = []
    for case in CHEAP_CASES:
        key = ("model", "gpu", "tp", "precision", "isl", "osl")
        rows += [r for r in offline if tuple(r[k] for k in key) == case][:1]
    if len(rows) < 2:
        rows = offline[:4]
    return write_csv(tmp_path / "measured4.csv", rows)


def test_calibrate_writes_a_profile_perf_accepts(cli, measured_four, tmp_path):
    (tmp_path / "tmp").mkdir()
    res = cli("calibrate", measured_four, "--max-evals", "10", "--name", "fitted-test",
              "-o", "tmp/profile.yaml")
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    profile = tmp_path / "tmp" / "profile.yaml"
    assert profile.is_file()
    data = yaml.safe_load(profile.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data["name"] == "fitted-test"
    assert "offline_throughput" in data.get("fit_error", {})

    perf = _json(cli("perf", "--engine", "tmp/profile.yaml", *PERF_8B, "--json"))
    assert perf["engine"] == "fitted-test"
    assert perf["metrics"]["output_throughput"] > 0

    check = _json(cli("validate", measured_four, "--engine", "tmp/profile.yaml", "--json"))
    assert {t["tier"] for t in check["tiers"]} == {"offline_throughput"}


ENGINE_ROWS = (
    "engine,engine_version,model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,concurrency,batch,metric,value,"
    "unit,source\n"
    "vllm,0.8,llama-3.1-8b,h100-sxm,1,1,bf16,128,2048,offline,inf,,16,output_throughput,2000,tokens/s,a\n"
    "sglang,0.4,llama-3.1-8b,h100-sxm,1,1,bf16,128,2048,offline,inf,,16,output_throughput,2400,tokens/s,b\n"
    "vllm,0.8,llama-3.1-8b,h100-sxm,1,1,bf16,sharegpt,sharegpt,rate,4,,,mean_ttft,30,ms,"
    "ShareGPT 200 prompts (mean in/out from totals 215.2/122.2)\n"
    "vllm,0.8,llama-3.1-8b,h100-sxm,1,1,bf16,1024,128,concurrency,,8,,median_itl,9,ms,c 64 prompts\n"
)


def test_calibrate_fits_the_engine_rows_of_a_multi_engine_file(cli, tmp_path):
    path = tmp_path / "engines.csv"
    path.write_text(ENGINE_ROWS, encoding="utf-8")
    res = cli("calibrate", path, "--engine", "sglang", "--max-evals", "5", "--tiers", "offline_throughput",
              "-o", tmp_path / "sglang.yaml")
    assert res.code == 0, res.err
    data = yaml.safe_load((tmp_path / "sglang.yaml").read_text(encoding="utf-8"))
    assert data["name"] == "sglang" and "(1 cases" in data["source"]
    assert data["coverage"]["gpu_precision"] == ["h100-sxm/bf16"]
    res = cli("calibrate", path, "--engine", "trtllm", "--max-evals", "5", "-o", tmp_path / "t.yaml")
    assert res.code != 0 and "engines (sglang, vllm)" in res.err


def test_perf_points_keeps_sharegpt_and_concurrency_cells(cli, tmp_path):
    path = tmp_path / "engines.csv"
    path.write_text(ENGINE_ROWS, encoding="utf-8")
    rows = list(csv.DictReader(cli("perf", "--points", path).out.splitlines()))
    assert [(r["isl"], r["mode"], r["concurrency"]) for r in rows] == [
        ("128", "offline", ""), ("128", "offline", ""), ("sharegpt", "rate", ""), ("1024", "concurrency", "8")]
    assert all(r["status"] == "ok" and float(r["median_itl_ms"]) > 0 for r in rows)
    assert float(rows[3]["p99_tpot_ms"]) >= float(rows[3]["median_tpot_ms"]) > 0
