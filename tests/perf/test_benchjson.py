"""`vllm bench serve --save-result` files as calibration points: one point per run, modes and metrics mapped."""

from __future__ import annotations

import json

import pytest

from fleetwise.errors import InputFormatError
from fleetwise.perf.benchjson import bench_points, is_bench_result


def result(**kw) -> dict:
    base = {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "num_prompts": 200, "request_rate": 4.0,
            "max_concurrency": None, "completed": 200, "total_input_tokens": 204_800, "total_output_tokens": 25_600,
            "output_throughput": 500.0, "request_throughput": 3.9, "mean_ttft_ms": 50.0, "median_ttft_ms": 45.0,
            "p99_ttft_ms": 130.0, "mean_tpot_ms": 9.5, "mean_itl_ms": 9.4, "median_itl_ms": 9.0,
            "mean_e2el_ms": 1250.0}
    return base | kw


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_one_point_per_run_with_its_mode_lengths_and_metrics(tmp_path):
    write(tmp_path, "a.json", result())
    write(tmp_path, "b.json", [result(request_rate="inf", max_concurrency=32), result(request_rate="inf")])
    (tmp_path / "notes.json").write_text('{"unrelated": true}')  # not a result: ignored in a directory
    pts = bench_points(tmp_path, gpu="h100-sxm", gpus=2, precision="fp8")
    assert [p.case.mode for p in pts] == ["rate", "concurrency", "offline"]
    rate, conc, offline = pts
    assert (rate.case.isl, rate.case.osl, rate.case.rate_qps, rate.case.num_requests) == (1024, 128, 4.0, 200)
    assert conc.case.concurrency == 32 and offline.case.batch == 200
    assert rate.case.engine == "vllm" and rate.case.tp == 2 and rate.case.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert rate.measured == {"mean_ttft": 50.0, "median_ttft": 45.0, "p99_ttft": 130.0, "mean_tpot": 9.5,
                             "mean_itl": 9.4, "median_itl": 9.0, "mean_e2e": 1250.0, "output_throughput": 500.0,
                             "request_throughput": 3.9}
    assert is_bench_result(tmp_path) and is_bench_result(tmp_path / "a.json")
    assert not is_bench_result(tmp_path / "notes.json")


@pytest.mark.parametrize(("data", "match"), [
    (result(model_id=None), "model_id"),
    (result(completed=0), "completed no request"),
    (result(mean_ttft_ms="fast"), "'mean_ttft_ms' is not a finite number"),
    ({"completed": 3}, "no vllm bench serve result"),
])
def test_bad_results_name_the_file_and_what_is_wrong(tmp_path, data, match):
    path = write(tmp_path, "r.json", data)
    with pytest.raises(InputFormatError, match=match) as info:
        bench_points(path, gpu="h100-sxm", precision="fp8")
    assert str(path) in str(info.value)


def test_calibrate_fits_a_directory_of_results(tmp_path):
    from typer.testing import CliRunner

    from fleetwise.cli import _register, app

    _register()
    for k, rate in enumerate((1.0, 4.0, 8.0)):
        write(tmp_path, f"run{k}.json", result(request_rate=rate, mean_ttft_ms=40.0 + 20 * k))
    out = tmp_path / "fit.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", str(tmp_path), "--gpu", "h100", "--precision", "fp8", "--engine", "vllm",
                              "--max-evals", "4", "-o", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["points"] == 3 and set(summary["fit_error"]) >= {"rate_ttft", "rate_itl"}
    assert summary["coverage"]["models"] == ["llama-3.1-8b"] and out.exists()
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "run0.json"), "-o", str(tmp_path / "x.yaml")])
    assert missing.exit_code != 0 and not (tmp_path / "x.yaml").exists()
