"""Bad points files and engine profiles: one error line naming file, line/entry and field.

Regressions of a fuzzing pass: byte-order marks and non-UTF-8 bytes, columns given twice, measured values
that are not finite and > 0, points nothing can be predicted for (silently dropped before), profile
settings that crashed or skewed the model, and ``max_num_tokens: 0``, which looped forever.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwise.errors import CatalogError, ConfigError, InfeasibleError, InputFormatError
from fleetwise.perf.calibrate import calibrate, predict_case, predict_points, tier_errors
from fleetwise.perf.points import Case, Point, read_points
from fleetwise.perf.predict import MAX_TOKENS, predict
from fleetwise.perf.profile import EngineProfile, engine_names, get_profile, load_profile_file

HEADER = "engine,model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,batch"
MEASURED = HEADER + ",metric,value"
ROW = "vllm,llama-3.1-8b,h100-sxm,1,1,fp8,128,128,offline,,"
INFEASIBLE = "vllm,llama-3.1-405b,a10g,1,1,bf16,128,128,offline,,"  # 756 GiB of weights on a 24 GiB GPU


def _write(tmp_path: Path, text: str | bytes, name: str = "points.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, *, measured: bool = False) -> InputFormatError:
    with pytest.raises(InputFormatError) as info:
        read_points(path, measured=measured)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return info.value


# ---------------------------------------------------------------------------------- points files


def test_byte_order_mark_keeps_the_first_column(tmp_path):
    (point,), header = read_points(_write(tmp_path, "\ufeff" + HEADER + "\n" + ROW + "\n"))
    assert header[0] == "engine"
    assert point.case.engine == "vllm"  # not the trtllm default of a missing engine column


def test_bytes_that_are_not_utf8(tmp_path):
    text = MEASURED + "\n" + ROW + ",output_throughput,5\n"
    path = _write(tmp_path, text.encode() + bytes(range(128, 256)))
    err = _error(path, measured=True)
    assert err.line == 3 and "UTF-8" in err.message


def test_column_given_twice(tmp_path):
    err = _error(_write(tmp_path, HEADER + ",isl\n" + ROW + ",5\n"))
    assert (err.line, err.field) == (1, "isl")


def test_more_cells_than_columns(tmp_path):
    err = _error(_write(tmp_path, HEADER + "\n" + ROW + "\n" + ROW + ",5\n"))
    assert err.line == 3


def test_quote_left_open(tmp_path):
    opened = 'vllm,"llama-3.1-8b,h100-sxm,1,1,fp8,128,128,offline,,'
    err = _error(_write(tmp_path, f"{HEADER}\n{ROW}\n{opened}\n"))
    assert err.line == 3 and "CSV" in err.message


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "-inf"])
def test_measured_value_must_be_finite_and_positive(tmp_path, value):
    err = _error(_write(tmp_path, f"{MEASURED}\n{ROW},output_throughput,{value}\n"), measured=True)
    assert (err.line, err.field) == (2, "value")


@pytest.mark.parametrize(("cell", "field"), [("rate,inf,", "rate_qps"), ("rate,nan,", "rate_qps"),
                                             ("static,,99999999999999999999", "batch")])
def test_load_columns_are_finite_and_bounded(tmp_path, cell, field):
    row = ROW.replace("offline,,", cell)
    err = _error(_write(tmp_path, f"{HEADER}\n{row}\n"))
    assert (err.line, err.field) == (2, field)


def test_token_counts_are_bounded(tmp_path):
    row = ROW.replace(",128,128,", f",{MAX_TOKENS + 1},128,")
    err = _error(_write(tmp_path, f"{HEADER}\n{row}\n"))
    assert err.field == "isl"


def test_unknown_metric_and_metric_measured_twice(tmp_path):
    err = _error(_write(tmp_path, f"{MEASURED}\n{ROW},p50_ttft,5\n"), measured=True)
    assert err.field == "metric" and "p50_ttft" in err.message
    text = f"{MEASURED}\n{ROW},output_throughput,5\n{ROW},mean_ttft,9\n{ROW},output_throughput,6\n"
    err = _error(_write(tmp_path, text), measured=True)
    assert (err.line, err.field) == (4, "metric") and "line 2" in err.message


@pytest.mark.parametrize(("row", "field", "needle"), [
    ("vllm,bogus-model,h100-sxm,1,1,fp8,128,128,offline,,", "model", "bogus-model"),
    ("vllm,llama-3.1-8b,tpu-v9,1,1,fp8,128,128,offline,,", "gpu", "tpu-v9"),
    ("vllm,llama-3.1-8b,h100-sxm,1,1,fp3,128,128,offline,,", "precision", "fp3"),
    ("vllm,llama-2-7b,h100-sxm,1,1,bf16,4000,200,offline,,", "isl", "context"),
])
def test_measured_point_nothing_can_be_predicted_for(tmp_path, row, field, needle):
    text = f"{MEASURED}\n{ROW},output_throughput,5\n{row},output_throughput,5\n"
    err = _error(_write(tmp_path, text), measured=True)
    assert (err.line, err.field) == (3, field) and needle in err.message


def test_plain_points_report_what_cannot_be_served(tmp_path):
    """perf --points writes a status per row: unknown names there are a status, not an error."""
    path = _write(tmp_path, f"{HEADER}\nvllm,bogus-model,h100-sxm,1,1,fp8,128,128,offline,,\n")
    (point,), _ = read_points(path)
    assert point.case.model == "bogus-model"
    long = Case("trtllm", "llama-2-7b", "h100-sxm", 1, 1, "bf16", 4000, 200, "offline", None, None)
    metrics, reason = predict_case(long, get_profile("trtllm"))
    assert metrics is None and "context" in reason


# ------------------------------------------------------------------------------- validate / calibrate


def _infeasible_points(tmp_path) -> list[Point]:
    path = _write(tmp_path, f"{MEASURED}\n{INFEASIBLE},output_throughput,5\n", "infeasible.csv")
    points, _ = read_points(path, measured=True)
    return points


def test_tier_errors_refuse_when_no_point_can_be_predicted(tmp_path, profile):
    points = _infeasible_points(tmp_path)
    with pytest.raises(InfeasibleError) as info:
        tier_errors(points, predict_points(points, profile))
    assert "infeasible.csv" in str(info.value) and "line 2" in str(info.value)


def test_tier_errors_refuse_when_no_metric_belongs_to_a_tier(tmp_path):
    path = _write(tmp_path, f"{MEASURED}\n{ROW},request_throughput,5\n")
    points, _ = read_points(path, measured=True)
    with pytest.raises(InputFormatError, match="no measured point has a metric"):
        tier_errors(points, {})


def test_calibrate_refuses_when_no_point_can_be_predicted(tmp_path, profile):
    with pytest.raises(InfeasibleError) as info:
        calibrate(_infeasible_points(tmp_path), profile, max_evals=1)
    assert "infeasible.csv" in str(info.value) and "GiB" in str(info.value)


@pytest.mark.parametrize("evals", [0, -5, True])
def test_calibrate_max_evals_must_be_positive(profile, evals):
    case = Case("trtllm", "llama-3.1-8b", "h100-sxm", 1, 1, "fp8", 128, 128, "offline", None, None)
    with pytest.raises(ConfigError, match="max_evals"):
        calibrate([Point(case, 2, measured={"output_throughput": 10.0})], profile, max_evals=evals)


# ---------------------------------------------------------------------------------- engine profiles


def _profile_file(tmp_path: Path, field: str, value: str) -> Path:
    lines = [ln for ln in get_profile("trtllm").to_yaml().splitlines()
             if not ln.startswith((f"{field}:", "fit_error:", "coverage:", "  "))]
    return _write(tmp_path, "\n".join([*lines, f"{field}: {value}"]) + "\n", f"{field}.yaml")


@pytest.mark.parametrize(("field", "value"), [
    ("max_batch", "abc"), ("max_batch", "-1"), ("max_batch", "true"), ("max_batch", "2048.5"),
    ("max_batch", "1000000000"), ("max_num_tokens", "0"), ("kv_block_tokens", "0"), ("kv_mem_fraction", "5"),
    ("kv_mem_fraction", "-1"), ("workspace_gib", ".inf"), ("workspace_gib", "-3"), ("link_eff", ".nan"),
    ("link_eff", "2"), ("step_overhead_ms", "null"), ("name", "''"), ("fit_error", "{static: .nan}"),
    ("typo_field", "1"),
])
def test_bad_profile_field_names_file_and_field(tmp_path, field, value):
    path = _profile_file(tmp_path, field, value)
    with pytest.raises(CatalogError) as info:
        load_profile_file(path)
    err = info.value
    assert err.file == str(path) and err.field.startswith(field), str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("data", [bytes(range(128, 256)), b"name: x\nname: y\n", b"- a list\n", b""],
                         ids=["binary", "key-twice", "list", "empty"])
def test_unreadable_profile_file(tmp_path, data):
    path = _write(tmp_path, data, "profile.yaml")
    with pytest.raises(CatalogError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_shipped_profiles_and_a_round_trip_load(tmp_path):
    for name in engine_names():
        profile = get_profile(name)
        assert load_profile_file(_write(tmp_path, profile.to_yaml(), f"{name}.yaml")) == profile


def test_zero_token_budget_is_refused_not_an_endless_loop(make_replica):
    """max_num_tokens 0 left every prompt waiting for a token budget that never came."""
    with pytest.raises(ConfigError, match="max_num_tokens"):
        make_replica("llama-3.1-8b", "h100", precision="fp8",
                     profile=EngineProfile(name="zero-budget", max_num_tokens=0))
    with pytest.raises(ConfigError, match="max_batch"):
        make_replica("llama-3.1-8b", "h100", precision="fp8",
                     profile=EngineProfile(name="no-batch", max_batch=-1))
    with pytest.raises(ConfigError, match="max_num_tokens"):
        make_replica("llama-3.1-8b", "h100", precision="fp8", max_num_tokens=0)


def test_predict_bounds_lengths_and_requests(make_replica):
    replica = make_replica("llama-3.1-8b", "h100", precision="fp8")
    with pytest.raises(ConfigError, match="at most"):
        predict(replica, 99999999999999999999, 128)
    with pytest.raises(ConfigError, match="requests to simulate"):
        predict(replica, 128, 128, "static", batch=10**12)
