"""Points files, per-case prediction, tier errors and the calibrator."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from fleetwise.errors import InputFormatError, SolverError
from fleetwise.perf.calibrate import FIT_TIERS, calibrate, predict_case, predict_points, tier_errors
from fleetwise.perf.points import Case, Point, read_points
from fleetwise.perf.profile import FITTED_BOUNDS, EngineProfile, get_profile
from tests.shared_data import SHARED_DATA

DATA = SHARED_DATA
MEASURED = DATA / "perf" / "measured_calibration.csv"
needs_data = pytest.mark.skipif(not MEASURED.exists(), reason=f"calibration data not found at {MEASURED}")

HEADER = "engine,model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,batch,note\n"
MINIMAL_HEADER = "model,gpu,num_gpus,precision,isl,osl,mode\n"


def _write(tmp_path: Path, text: str, name: str = "points.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------- read_points


def test_read_points_small_file(tmp_path):
    path = _write(
        tmp_path,
        HEADER
        + "trtllm,llama-3.1-8b,h100,2,,fp8,128,256,offline,,,first\n"
        + "trtllm,llama-3.1-70b,h200,4,2,bf16,467,16,rate,8.5,,second\n"
        + "vllm,mistral-7b,l40s,1,1,fp16,2048,128,static,,64,\n",
    )
    points, header = read_points(path)
    assert header == HEADER.strip().split(",")
    assert [p.line for p in points] == [2, 3, 4]
    a, b, c = (p.case for p in points)
    assert a == Case("trtllm", "llama-3.1-8b", "h100", 2, 2, "fp8", 128, 256, "offline", None, None)
    assert b.engine == "trtllm" and b.tp == 2 and b.num_gpus == 4 and b.rate_qps == 8.5 and b.tier == "rate"
    assert c.engine == "vllm" and c.batch == 64 and c.mode == "static"
    assert points[0].extra == {"note": "first"} and points[2].extra == {"note": ""}
    assert all(p.measured == {} for p in points)


def test_read_points_without_optional_columns(tmp_path):
    path = _write(tmp_path, MINIMAL_HEADER + "llama-3.1-8b,a100-80gb,1,bf16,10,20,offline\n")
    (point,), _ = read_points(path)
    expected = Case("trtllm", "llama-3.1-8b", "a100-80gb", 1, 1, "bf16", 10, 20, "offline", None, None)
    assert point.case == expected


def test_read_measured_points_merges_metrics_of_a_case(tmp_path):
    path = _write(
        tmp_path,
        "model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,metric,value\n"
        "llama-3.1-8b,h100,1,1,bf16,467,256,rate,4,mean_ttft,30.5\n"
        "llama-3.1-8b,h100,1,1,bf16,467,256,rate,4,mean_itl,8.25\n"
        "llama-3.1-8b,h100,1,1,bf16,467,256,rate,8,mean_itl,9\n",
    )
    points, _ = read_points(path, measured=True)
    assert len(points) == 2
    assert points[0].line == 2 and points[0].measured == {"mean_ttft": 30.5, "mean_itl": 8.25}
    assert points[1].line == 4 and points[1].measured == {"mean_itl": 9.0}


ROW = "trtllm,llama-3.1-8b,h100,1,1,fp8,128,128,offline,,,\n"


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        (ROW + "trtllm,llama-3.1-8b,h100,1,1,fp8,abc,128,offline,,,\n", 3, "isl"),
        ("trtllm,llama-3.1-8b,h100,-2,1,fp8,128,128,offline,,,\n", 2, "num_gpus"),
        (ROW * 3 + "trtllm,llama-3.1-8b,h100,1,1,fp8,128,128,burst,,,\n", 5, "mode"),
        ("trtllm,llama-3.1-8b,h100,1,1,fp8,128,0,offline,,,\n", 2, "osl"),
        ("trtllm,llama-3.1-8b,h100,1,1,fp8,128,128,rate,-1,,\n", 2, "rate_qps"),
        ("trtllm,,h100,1,1,fp8,128,128,offline,,,\n", 2, "model"),
        ("trtllm,llama-3.1-8b,h100,1,1,fp8,128,128,static,,two,\n", 2, "batch"),
    ],
)
def test_malformed_points_name_file_line_and_field(tmp_path, body, line, field):
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(InputFormatError) as info:
        read_points(path)
    err = info.value
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}: ")
    assert f"field '{field}'" in msg
    assert err.line == line and err.field == field and err.file == str(path)


def test_missing_column_is_reported_on_the_header_line(tmp_path):
    path = _write(tmp_path, "model,gpu,num_gpus,precision,osl,mode\nllama-3.1-8b,h100,1,fp8,128,offline\n")
    with pytest.raises(InputFormatError) as info:
        read_points(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:1: ")
    assert "'isl'" in msg


def test_measured_file_needs_metric_and_value(tmp_path):
    path = _write(tmp_path, MINIMAL_HEADER + "llama-3.1-8b,h100,1,fp8,1,1,offline\n")
    with pytest.raises(InputFormatError, match="missing column 'metric'"):
        read_points(path, measured=True)
    path = _write(
        tmp_path,
        "model,gpu,num_gpus,precision,isl,osl,mode,metric,value\n"
        "llama-3.1-8b,h100,1,fp8,1,1,offline,mean_ttft,\n",
        "blank.csv",
    )
    with pytest.raises(InputFormatError, match=r"blank\.csv:2: measured rows need metric and value"):
        read_points(path, measured=True)


def test_unreadable_or_empty_points_file(tmp_path):
    with pytest.raises(InputFormatError, match="cannot read"):
        read_points(tmp_path / "nope.csv")
    with pytest.raises(InputFormatError, match="no data rows"):
        read_points(_write(tmp_path, HEADER))


@pytest.mark.parametrize(
    "body",
    [
        ROW + "\n" + "trtllm,llama-3.1-8b,h100,1,1,fp8,abc,128,offline,,,\n",
        ('trtllm,llama-3.1-8b,h100,1,1,fp8,128,128,offline,,,"two\nlines"\n'
         "trtllm,llama-3.1-8b,h100,1,1,fp8,abc,128,offline,,,\n"),
    ],
)
def test_error_line_is_the_physical_file_line(tmp_path, body):
    """Regression: line numbers are physical lines (blank lines and multi-line fields count)."""
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(InputFormatError) as info:
        read_points(path)
    assert info.value.line == 4


def test_blank_engine_cell_defaults_to_trtllm(tmp_path):
    """Regression: a blank engine cell means the default engine, like blank tp/rate/batch."""
    path = _write(tmp_path, HEADER + ",llama-3.1-8b,h100,1,1,fp8,128,128,offline,,,\n")
    (point,), _ = read_points(path)
    assert point.case.engine == "trtllm"


# --------------------------------------------------------------------------------- predict_case


def _case(**changes) -> Case:
    base = Case("trtllm", "llama-3.1-8b", "h100", 1, 1, "fp8", 128, 128, "rate", 2.0, None)
    return replace(base, **changes)


def test_predict_case_ok(profile):
    metrics, reason = predict_case(_case(), profile)
    assert reason == "ok"
    assert metrics is not None and metrics.mean_ttft_ms > 0 and metrics.mean_itl_ms > 0
    # Rate-mode cases use constant arrivals: at 2 req/s they arrive exactly 0.5 s apart.
    assert metrics.request_throughput == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"model": "gpt-17"}, "gpt-17"),
        ({"gpu": "tpu-v9"}, "tpu-v9"),
        ({"gpu": "a100-80gb", "precision": "fp8"}, "not supported"),
        ({"model": "llama-3.1-405b", "gpu": "a10g", "precision": "bf16"}, "GiB"),
        ({"mode": "static", "batch": None, "rate_qps": None}, "batch"),
    ],
)
def test_predict_case_returns_reason_when_it_cannot_serve(profile, changes, needle):
    metrics, reason = predict_case(_case(**changes), profile)
    assert metrics is None
    assert needle in reason
    assert "\n" not in reason


# ---------------------------------------------------------------------------------- tier_errors


def test_tier_errors_hand_computed(profile):
    metrics, _ = predict_case(_case(mode="offline", rate_qps=None), profile)
    assert metrics is not None
    c1 = _case(mode="offline", rate_qps=None, isl=100)
    c2 = _case(mode="offline", rate_qps=None, isl=200)
    c3 = _case(rate_qps=4.0)
    points = [
        Point(c1, 2, measured={"output_throughput": 100.0}),
        Point(c2, 3, measured={"output_throughput": 200.0}),
        Point(c3, 4, measured={"mean_ttft": 50.0, "mean_itl": 10.0}),
    ]
    preds = {
        c1: replace(metrics, output_throughput=110.0),  # +10%
        c2: replace(metrics, output_throughput=150.0),  # -25%
        c3: replace(metrics, mean_ttft_ms=40.0, mean_itl_ms=12.0),  # -20%, +20%
    }
    errs = {e.tier: e for e in tier_errors(points, preds)}
    assert set(errs) == {"offline_throughput", "rate_ttft", "rate_itl"}
    assert errs["offline_throughput"].mape == pytest.approx(0.175)
    assert errs["offline_throughput"].n == 2
    assert "150 vs 200" in errs["offline_throughput"].worst
    assert errs["rate_ttft"].mape == pytest.approx(0.2)
    assert errs["rate_itl"].mape == pytest.approx(0.2)
    # Points that cannot be predicted are left out rather than counted as errors.
    preds[c2] = None
    errs = {e.tier: e for e in tier_errors(points, preds)}
    assert errs["offline_throughput"].n == 1 and errs["offline_throughput"].mape == pytest.approx(0.1)


# ------------------------------------------------------------------------------------ calibrate

SUBSET = {
    ("llama-3.1-8b", "h100-sxm", "1", "fp8", "128", "4096", "offline", ""),
    ("llama-3.1-70b", "h200", "1", "fp8", "128", "4096", "offline", ""),
    ("llama-3.1-8b", "a100-80gb", "1", "fp16", "128", "4096", "offline", ""),
    ("llama-3.1-70b", "h200", "4", "bf16", "467", "16", "rate", "32"),
    ("llama-3.1-70b", "h100-sxm", "4", "bf16", "467", "16", "rate", "16"),
    ("llama-3.1-70b", "h200", "4", "bf16", "467", "256", "rate", "32"),
}


@pytest.fixture(scope="module")
def measured_points():
    if not MEASURED.exists():
        pytest.skip(f"calibration data not found at {MEASURED}")
    points, _ = read_points(MEASURED, measured=True)
    return points


@needs_data
def test_calibrate_improves_a_bad_profile(tmp_path):
    with MEASURED.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        keys = ("model", "gpu", "num_gpus", "precision", "isl", "osl", "mode", "rate_qps")
        rows = [r for r in reader if tuple(r[k] for k in keys) in SUBSET]
        fields = reader.fieldnames
    subset = tmp_path / "subset.csv"
    with subset.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    points, _ = read_points(subset, measured=True)
    assert len(points) == 6

    bad = EngineProfile(name="trtllm", gemm_bw_eff=0.2, gemm_compute_eff=0.2)
    before = {e.tier: e.mape for e in tier_errors(points, predict_points(points, bad))}
    assert set(before) == set(FIT_TIERS)
    fitted = calibrate(points, bad, max_evals=30, dataset="subset.csv")
    after = {e.tier: e.mape for e in tier_errors(points, predict_points(points, fitted))}
    for tier in FIT_TIERS:
        assert after[tier] < before[tier], tier
        assert fitted.fit_error[tier] == pytest.approx(after[tier], abs=1e-4)
    assert after["offline_throughput"] < 0.5 * before["offline_throughput"]
    assert sum(after.values()) < 0.25 * sum(before.values())
    for name, (low, high) in FITTED_BOUNDS.items():
        assert low <= getattr(fitted, name) <= high
    assert fitted.fitted_on == "subset.csv"
    assert "6 cases" in fitted.source
    # Scheduler settings are not fitted.
    assert (fitted.max_batch, fitted.max_num_tokens, fitted.kv_block_tokens) == (
        bad.max_batch, bad.max_num_tokens, bad.kv_block_tokens
    )


def test_calibrate_without_usable_points_fails(profile):
    case = _case(mode="static", batch=8, rate_qps=None)
    static_only = [Point(case, 2, measured={"output_throughput": 10.0})]
    with pytest.raises(SolverError):
        calibrate(static_only, profile, max_evals=5)


@pytest.fixture(scope="module")
def shipped_errors(measured_points):
    profile = get_profile("trtllm")
    errors = tier_errors(measured_points, predict_points(measured_points, profile))
    return profile, {e.tier: e for e in errors}


@needs_data
def test_shipped_trtllm_profile_meets_accuracy_goals(shipped_errors):
    _, errs = shipped_errors
    assert errs["offline_throughput"].mape <= 0.15, errs["offline_throughput"].worst
    assert errs["rate_itl"].mape <= 0.20, errs["rate_itl"].worst
    assert errs["rate_ttft"].mape <= 0.30, errs["rate_ttft"].worst
    assert errs["offline_throughput"].n >= 100 and errs["rate_ttft"].n >= 30


@needs_data
def test_shipped_profile_fit_error_is_current(shipped_errors):
    """The fit_error recorded in trtllm.yaml matches what the current model predicts with it."""
    profile, errs = shipped_errors
    if not profile.fit_error:
        pytest.skip(f"profile records no fit_error ({profile.source})")
    for tier, recorded in profile.fit_error.items():
        if not tier.startswith("held_out_"):  # held-out figures come from benchmarks/calibration_holdout.py
            assert errs[tier].mape == pytest.approx(recorded, abs=0.01), tier
