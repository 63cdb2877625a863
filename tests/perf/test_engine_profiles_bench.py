"""benchmarks/engine_profiles.py's bias table: the median predicted / measured of each (tier, publication, GPU),
as a throughput for static whole-batch times. The fits themselves belong to the benchmark, not to a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fleetwise.catalog import load_catalog
from fleetwise.perf.calibrate import predict_case
from fleetwise.perf.points import Case, Point

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "engine_profiles.py"
pytestmark = pytest.mark.skipif(not BENCH.exists(), reason="benchmarks/ is not part of this checkout")


def _bench():
    spec = importlib.util.spec_from_file_location("engine_profiles_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bias_is_the_median_ratio_per_tier_publication_and_gpu(profile):
    bench = _bench()
    static = Case("vllm", "llama-3.1-8b", "h100-sxm", 1, 1, "bf16", 128, 128, "static", None, 8)
    rate = Case("vllm", "llama-3.1-8b", "h100-sxm", 1, 1, "bf16", 128, 128, "rate", 2.0, None, num_requests=50)
    s, r = predict_case(static, profile)[0], predict_case(rate, profile)[0]
    argonne = {"source": "argonne-lcf/LLM-Inference-Bench Plots/All_results.csv @4211f5d"}
    simon = {"source": "simon-mo/vLLM-Benchmark saved-results/v0.8.4/x.json @d538cdc"}
    points = [
        Point(static, 2, argonne, {"mean_e2e": s.mean_e2e_ms / 2}),  # twice as fast as predicted
        Point(rate, 3, simon, {"mean_ttft": r.mean_ttft_ms * 4, "mean_itl": r.mean_itl_ms}),
    ]
    rows = {(b["tier"], b["source"], b["gpu"]): b for b in bench.bias(points, profile, load_catalog())}
    assert set(rows) == {("static", "argonne", "h100-sxm"), ("rate_ttft", "simon-mo", "h100-sxm"),
                         ("rate_itl", "simon-mo", "h100-sxm")}
    assert rows["static", "argonne", "h100-sxm"]["median"] == pytest.approx(0.5)  # of throughput, not time
    assert rows["rate_ttft", "simon-mo", "h100-sxm"]["median"] == pytest.approx(0.25)
    assert rows["rate_itl", "simon-mo", "h100-sxm"]["median"] == pytest.approx(1.0)
    assert [b["tier"] for b in bench.bias(points, profile, load_catalog())] == ["static", "rate_ttft", "rate_itl"]
