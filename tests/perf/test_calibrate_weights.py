"""The calibrator's loss weights: every tier, within it every publication, within that every GPU weighs the
same, so a publication with many rows (or the only one on some GPU) does not set the global parameters."""

from __future__ import annotations

import pytest

from fleetwise.perf.calibrate import _pairs, _weights, publication
from fleetwise.perf.points import Case, Point

ARGONNE = "argonne-lcf/LLM-Inference-Bench Plots/All_results.csv @4211f5d (data row 704) | ALCF Polaris"


def _point(gpu: str, source: str, line: int = 2) -> Point:
    case = Case("vllm", "llama-3.1-8b", gpu, 1, 1, "fp16", 128, 128, "static", None, 1)
    return Point(case, line, {"source": source}, {"mean_e2e": 1.0})


@pytest.mark.parametrize(("source", "expected"), [
    (ARGONNE, "argonne-lcf/LLM-Inference-Bench Plots"),
    ("dstackai/benchmarks Deepseek-R1/raw_data/online_results.csv @7f37e66 (data row 1) | 8xMI300X",
     "dstackai/benchmarks Deepseek-R1"),
    ("dstackai/benchmarks comparison/h100sxm5_vs_mi300x/raw_data/x.json @06c957a", "dstackai/benchmarks comparison"),
    ("https://www.amd.com/ja/developer/resources/rocm-hub/dev-ai/performance-results.html (crawl) | table",
     "www.amd.com"),
    ("https://www.amd.com/en/developer/resources/rocm-hub/dev-ai/performance-results.html", "www.amd.com"),
    ("my-run", "my-run"),
    ("", ""),
])
def test_publication_is_the_repository_and_top_folder_or_the_web_host(source, expected):
    assert publication(_point("h100-sxm", source)) == expected


def test_each_tier_publication_and_gpu_weighs_the_same_whatever_its_row_count():
    many = [_point("mi300x", ARGONNE, line) for line in range(700)] + [_point("h100-sxm", ARGONNE, 800)]
    few = [_point("h100-sxm", "dstackai/benchmarks comparison/raw_data/h.json")]
    weights = _weights(_pairs(many + few, ("static",)))
    argonne, dstack = "argonne-lcf/LLM-Inference-Bench Plots", "dstackai/benchmarks comparison"
    # Half the tier to each publication; Argonne's half split between its two GPUs, then between their rows.
    assert weights["static", dstack, "h100-sxm"] == pytest.approx(0.5)
    assert weights["static", argonne, "h100-sxm"] == pytest.approx(0.25)
    assert weights["static", argonne, "mi300x"] == pytest.approx(0.25 / 700)
    total = sum(weights[t, publication(p), p.case.gpu] for t, p, _ in _pairs(many + few, ("static",)))
    assert total == pytest.approx(1.0)


def test_a_single_publication_is_weighted_by_gpu_as_before():
    points = [_point("h100-sxm", "", line) for line in range(3)] + [_point("a100-40gb", "", 9)]
    assert _weights(_pairs(points, ("static",))) == {
        ("static", "", "h100-sxm"): pytest.approx(1 / 6), ("static", "", "a100-40gb"): pytest.approx(0.5)}
