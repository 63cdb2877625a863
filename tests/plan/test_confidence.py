"""Confidence of a prediction from the calibration points its engine profile names (fitted_on)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from fleetwise.catalog import load_catalog
from fleetwise.perf.profile import EngineProfile, get_profile
from fleetwise.plan.confidence import allowed, error_band, model_class, profile_coverage
from tests.shared_data import shared

HEADER = ["engine", "model", "gpu", "num_gpus", "tp", "precision", "isl", "osl", "mode", "rate_qps", "batch",
          "metric", "value", "unit", "source"]
SHARED = shared("perf", "measured_calibration.csv")


def _points(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for engine, model, gpu, precision in rows:
            writer.writerow([engine, model, gpu, 1, 1, precision, 128, 128, "offline", "", "",
                             "output_throughput", 1000, "tokens/s", "test"])
    return path


def _profile(path: Path, **fit_error: float) -> EngineProfile:
    return EngineProfile(name="trtllm", fitted_on=str(path), fit_error=fit_error)


@pytest.fixture
def points(tmp_path) -> Path:
    return _points(tmp_path / "points.csv", [
        ("trtllm", "llama-3.1-70b", "h100-sxm", "fp8"),
        ("trtllm", "llama-3.1-8b", "a100-80gb", "bf16"),
        ("vllm", "mixtral-8x7b", "b200", "fp4"),  # another engine's row: no coverage for trtllm
    ])


def _level(profile, gpu, precision, model):
    return profile_coverage(profile).has(gpu, precision, model_class(load_catalog().model(model)))


def test_model_classes():
    cat = load_catalog()
    assert model_class(cat.model("llama-3.1-70b")) == "dense"
    assert model_class(cat.model("mixtral-8x7b")) == "moe"
    assert model_class(cat.model("deepseek-v3")) == "mla"


@pytest.mark.parametrize("gpu, precision, model, level", [
    ("h100-sxm", "fp8", "llama-3.1-70b", "measured"),
    ("h100-sxm", "fp8", "llama-3.1-8b", "measured"),  # same class (dense) as the measured model
    ("a100-80gb", "fp8", "llama-3.1-70b", "interpolated"),  # GPU and precision each measured, not together
    ("b200", "fp8", "llama-3.1-70b", "extrapolated"),  # no calibration point on B200 for this engine
    ("h100-sxm", "fp4", "llama-3.1-70b", "extrapolated"),
    ("h100-sxm", "fp8", "mixtral-8x7b", "extrapolated"),  # no MoE point
])
def test_levels_from_the_points_file(points, gpu, precision, model, level):
    assert _level(_profile(points), gpu, precision, model) == level


def test_new_calibration_rows_widen_coverage(points):
    profile = _profile(points)
    assert _level(profile, "b200", "fp4", "mixtral-8x7b") == "extrapolated"
    with points.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(["trtllm", "mixtral-8x7b", "b200", 8, 8, "fp4", 128, 128, "offline", "", "",
                                     "output_throughput", 1, "tokens/s", "test"])
    later = points.stat().st_mtime + 5
    os.utime(points, (later, later))
    assert _level(profile, "b200", "fp4", "mixtral-8x7b") == "measured"


def test_a_profile_without_a_readable_points_file_is_extrapolated_everywhere(tmp_path):
    profile = _profile(tmp_path / "missing.csv", rate_ttft=0.1)
    assert _level(profile, "h100-sxm", "fp8", "llama-3.1-70b") == "extrapolated"
    assert "no calibration file" in profile_coverage(profile).source


def test_error_band_comes_from_the_profile_and_says_so(points):
    profile = _profile(points, rate_ttft=0.12, rate_itl=0.09, static=0.5)
    band, source = error_band(profile, "measured")
    assert band == pytest.approx(0.12) and "in-sample" in source and "rate_ttft" in source
    band, source = error_band(profile, "extrapolated")
    assert band is None and "unknown" in source
    held = _profile(points, rate_ttft=0.12, rate_itl=0.09, held_out_rate_ttft=0.25, held_out_rate_itl=0.2)
    band, source = error_band(held, "extrapolated")
    assert band == pytest.approx(0.25) and "held-out" in source


def test_unfitted_profile_has_no_band():
    band, source = error_band(EngineProfile(name="x"), "measured")
    assert band is None and "no fit" in source


def test_confidence_filter_order():
    assert allowed("measured", "measured") and not allowed("interpolated", "measured")
    assert allowed("interpolated", "interpolated") and not allowed("extrapolated", "interpolated")
    assert allowed("extrapolated", "any")


@pytest.mark.skipif(not SHARED.is_file(), reason=f"{SHARED} is not available")
def test_shipped_trtllm_profile_has_no_blackwell_or_fp4_point(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # fitted_on is relative to the project, found from any working directory
    profile = get_profile("trtllm")
    assert _level(profile, "h100-sxm", "fp8", "llama-3.1-70b") == "measured"
    assert _level(profile, "b200", "fp4", "llama-3.1-70b") == "extrapolated"
