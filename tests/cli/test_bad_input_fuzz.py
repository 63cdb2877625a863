"""Bad input found by fuzzing every subcommand: each case is written as the project rule says it should behave.

The rule: malformed traces, catalogs or options give ONE line on stderr ('fleetwise: error: ...') naming the file,
line/entry and field, and a non-zero exit -- never a traceback, never a silent wrong answer -- and a failed run
leaves no output behind (outputs are written to a temporary file, then renamed).

Every case here once ended in a traceback, a silent wrong answer or a leftover file; each is a regression test now.
Every input is a few lines written into the scratch directory; no test runs long work.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from cli_helpers import offer_yaml

FAST_PLAN = ("--gpu", "h100", "--cloud", "aws", "--precision", "fp8", "--tp", "4")
PERF = ("--model", "llama-3.1-8b", "--gpu", "H100", "--precision", "fp8", "--isl", "128", "--osl", "128")
# optimize restricted so that its planning step takes well under a second
FAST_OPT = ("--gpu", "h100", "--cloud", "aws", "--offers", "1")
POINTS_HEADER = "engine,model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,batch"
MEASURED_HEADER = POINTS_HEADER + ",metric,value"
VLLM_POINT = "vllm,llama-3.1-8b,h100-sxm,1,1,fp8,128,128,offline,,"
TRACE_HEADER = "timestamp,input_tokens,output_tokens"
UNWRITABLE_DIR = Path("/proc")  # exists, but nothing can be created in it (not even by root)

needs_proc = pytest.mark.skipif(not (UNWRITABLE_DIR / "self").exists(), reason="needs Linux /proc")


def _trace_rows(n: int = 200) -> list[str]:
    return [f"{0.5 * k:.3f},{50 + (7 * k) % 400},{10 + (3 * k) % 150}" for k in range(n)]


def _gpu_yaml(gpu_id: str, memory: str = "80", tflops: str = "900") -> str:
    return (
        "gpus:\n"
        f"  - id: {gpu_id}\n"
        "    name: Test GPU\n"
        "    vendor: nvidia\n"
        "    generation: hopper\n"
        f"    memory_gib: {memory}\n"
        "    hbm_bandwidth_tbps: 3.35\n"
        f"    tflops: {{bf16: {tflops}, fp8: {tflops}}}\n"
        "    interconnect: nvlink\n"
        "    interconnect_bandwidth_gbps: 900\n"
        "    source: test\n"
        "    as_of: '2025-01-01'\n"
    )


def _model_yaml(model_id: str, heads: str, kv_heads: str) -> str:
    return (
        "models:\n"
        f"  - id: {model_id}\n"
        f"    hf_id: test/{model_id}\n"
        "    num_layers: 32\n"
        "    hidden_size: 4096\n"
        f"    num_attention_heads: {heads}\n"
        f"    num_kv_heads: {kv_heads}\n"
        "    head_dim: 128\n"
        "    intermediate_size: 14336\n"
        "    vocab_size: 128256\n"
        "    tied_embeddings: false\n"
        "    attention: gqa\n"
        "    max_context: 8192\n"
        "    published_params_b: 8.0\n"
        "    source: test\n"
        "    as_of: '2025-01-01'\n"
    )


def _catalog(root: Path, name: str, files: dict[str, str | bytes]) -> Path:
    d = root / name
    d.mkdir()
    for fn, text in files.items():
        (d / fn).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return d


@pytest.fixture
def f(tmp_path):
    """Malformed (and a few good) inputs, written into the scratch directory (also the working directory)."""

    def w(name: str, text: str) -> None:
        (tmp_path / name).write_text(text, encoding="utf-8")

    rows = _trace_rows()
    w("trace.csv", "\n".join([TRACE_HEADER, *rows]) + "\n")
    w("series.csv", "time,value\n" + "\n".join(f"{3600 * k},{10 + k % 24}" for k in range(48)) + "\n")
    # token counts beyond int64: must not wrap around to negative numbers
    w("overflow.csv", TRACE_HEADER + "\n" + "\n".join(f"{k},99999999999999999999,30" for k in range(20)) + "\n")
    w("overflow.jsonl", "\n".join(json.dumps({"timestamp": k, "input_length": 2**70, "output_length": 5})
                                  for k in range(20)) + "\n")
    w("hugetime.csv", TRACE_HEADER + "\n0,50,30\n1e300,50,30\n")
    w("nested.jsonl", "\n".join(json.dumps({"timestamp": {"a": 1}, "input_length": [1], "output_length": {"b": 2}})
                                for _ in range(20)) + "\n")
    w("sametime.csv", TRACE_HEADER + "\n" + "\n".join("5,50,30" for _ in range(100)) + "\n")
    w("no_output_col.csv", "timestamp,input_tokens\n" + "\n".join(f"{k},{100 + k}" for k in range(50)) + "\n")
    w("multiline.csv", TRACE_HEADER + '\n1,"5\n",5\n2,5,5\n3,y,5\n')  # the bad cell 'y' is on line 5
    w("tiny_period.csv", "time,value\n" + "\n".join(f"{1e-9 * k},5" for k in range(100)) + "\n")
    w("all_nan.csv", "time,value\n" + "\n".join(f"{3600 * k},nan" for k in range(48)) + "\n")
    w("prom_nan_time.json", '{"data": {"resultType": "matrix", "result": '
                            '[{"values": [[0, "5"], [NaN, "6"], [60, "7"]]}]}}')
    w("prom_far.json", json.dumps({"data": {"resultType": "matrix", "result": [{"values": [[0, "5"], [1e12, "6"]]}]}}))
    w("prom_neg.json", json.dumps({"data": {"resultType": "matrix",
                                            "result": [{"values": [[k * 60, "-5"] for k in range(100)]}]}}))
    # simulate --schedule / --preemptions
    w("sched_blank.csv", "time_s,on_demand\n\n\n0,2\n60,x\n")  # the bad cell 'x' is on line 5
    w("sched_short.csv", "time_s,on_demand,spot\n0,2\n")
    (tmp_path / "sched_bin.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "pre_bin.txt").write_bytes(bytes(range(256)) * 4)
    # points files for perf / validate / calibrate
    w("points_bom.csv", "\ufeff" + POINTS_HEADER + "\n" + VLLM_POINT + "\n")
    w("points_dupcol.csv", MEASURED_HEADER + ",isl\n" + VLLM_POINT + ",output_throughput,20000,5\n")
    w("points.csv", POINTS_HEADER + "\n" + VLLM_POINT + "\n")
    (tmp_path / "points_bin.csv").write_bytes((MEASURED_HEADER + "\n").encode() + bytes(range(128, 256)))
    for name, value in (("zero", "0"), ("neg", "-5"), ("nan", "nan"), ("inf", "inf"), ("good", "20000")):
        w(f"m_{name}.csv", MEASURED_HEADER + "\n" + VLLM_POINT + f",output_throughput,{value}\n")
    w("m_bogus_model.csv", MEASURED_HEADER + "\nvllm,bogus-model,h100-sxm,1,1,fp8,128,128,offline,,,"
                           "output_throughput,2000\n")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir.html").mkdir()
    (tmp_path / "outdir.png").mkdir()
    return tmp_path


def _leftovers(directory: Path, before: set[str]) -> list[str]:
    return sorted({p.name for p in directory.iterdir()} - before)


# -------------------------------------------------------------------------------- output paths (atomic.py)
# An output that is a directory, or sits in a directory where nothing can be created, is refused before any work
# starts (atomic.check_output_path), not as a raw OSError from atomic_path after the long work is done.

OUTPUT_COMMANDS = {
    "traffic-convert": ("traffic", "convert", "trace.csv", "-o", "{out}"),
    "traffic-synth": ("traffic", "synth", "--days", "1", "-o", "{out}"),
    "plan-csv": ("plan", *FAST_PLAN, "--csv", "{out}"),
    "perf-points-out": ("perf", "--points", "points.csv", "--out", "{out}"),
    "calibrate-output": ("calibrate", "m_good.csv", "--max-evals", "1", "-o", "{out}"),
    "simulate-timeline": ("simulate", "--trace", "trace.csv", "--replicas", "1", "--timeline", "{out}"),
}
HTML_OUTPUT_COMMANDS = {
    "simulate-report": ("simulate", "--trace", "trace.csv", "--replicas", "1", "--report", "{out}"),
    "compare-report": ("compare", "--trace", "trace.csv", "--strategies", "static-peak", "--report", "{out}"),
    "forecast-plot": ("forecast", "series.csv", "--horizon", "1h", "--method", "persistence", "--plot", "{out}"),
    "optimize-report": ("optimize", "--series", "series.csv", "--horizon", "1h", *FAST_OPT, "--cold-start-s", "100",
                        "--report", "{out}"),
    "summarize-plot": ("traffic", "summarize", "trace.csv", "--plot", "{out}"),
}


def _argv(template: tuple[str, ...], out: str) -> list[str]:
    return [a.replace("{out}", out) for a in template]


@pytest.mark.parametrize("template", list(OUTPUT_COMMANDS.values()), ids=list(OUTPUT_COMMANDS))
def test_output_path_is_a_directory(cli, user_error, f, template):
    before = {p.name for p in (f / "outdir").iterdir()}
    user_error(cli(*_argv(template, "outdir")), "outdir")
    assert _leftovers(f / "outdir", before) == []


@pytest.mark.parametrize("template", list(HTML_OUTPUT_COMMANDS.values()), ids=list(HTML_OUTPUT_COMMANDS))
def test_report_path_is_a_directory(cli, user_error, f, template):
    out = "outdir.png" if "summarize" in template else "outdir.html"
    user_error(cli(*_argv(template, out)), out)


@needs_proc
@pytest.mark.parametrize("template", [*OUTPUT_COMMANDS.values(), *HTML_OUTPUT_COMMANDS.values()],
                         ids=[*OUTPUT_COMMANDS, *HTML_OUTPUT_COMMANDS])
def test_output_in_unwritable_directory(cli, user_error, f, template):
    suffix = ".png" if "summarize" in template or "forecast" in template else ".html" if "--report" in template \
        else ".csv"
    out = str(UNWRITABLE_DIR / f"fleetwise-fuzz-out{suffix}")
    user_error(cli(*_argv(template, out)), out)


@pytest.mark.parametrize("argv", [
    ("traffic", "convert", "trace.csv", "-o", ""),
    ("calibrate", "m_good.csv", "--max-evals", "1", "-o", ""),
], ids=["traffic-convert", "calibrate"])
def test_empty_output_path(cli, user_error, f, argv):
    user_error(cli(*argv), "out")


@needs_proc
def test_simulate_failed_report_leaves_no_timeline(cli, user_error, f):
    res = cli("simulate", "--trace", "trace.csv", "--replicas", "1", "--timeline", "tl.csv",
              "--report", str(UNWRITABLE_DIR / "fleetwise-fuzz-report.html"))
    user_error(res, "fleetwise-fuzz-report.html")
    assert not (f / "tl.csv").exists()


# ------------------------------------------------------------------------------------- trace and series files


@pytest.mark.parametrize("name", ["overflow.csv", "overflow.jsonl"])
def test_token_count_overflow_is_rejected(cli, user_error, f, name):
    field = "input_tokens" if name.endswith(".csv") else "input_length"
    user_error(cli("traffic", "summarize", name, "--json"), name, field)


def test_absurd_timestamp_is_rejected(cli, user_error, f):
    user_error(cli("traffic", "summarize", "hugetime.csv"), "hugetime.csv")


@pytest.mark.parametrize("cmd", [("traffic", "summarize", "nested.jsonl"),
                                 ("simulate", "--trace", "nested.jsonl", "--replicas", "1")],
                         ids=["summarize", "simulate"])
def test_jsonl_with_nested_values(cli, user_error, f, cmd):
    user_error(cli(*cmd), "nested.jsonl")


def test_trace_with_zero_duration(cli, user_error, f):
    user_error(cli("traffic", "summarize", "sametime.csv"), "sametime.csv")


def test_trace_missing_output_column_is_not_a_series(cli, user_error, f):
    user_error(cli("traffic", "summarize", "no_output_col.csv"), "no_output_col.csv", "output")


def test_bad_row_line_number_after_multiline_cell(cli, user_error, f):
    user_error(cli("traffic", "summarize", "multiline.csv"), "multiline.csv", "line 5", "input_tokens")


def test_series_with_tiny_period(cli, user_error, f):
    user_error(cli("forecast", "tiny_period.csv"), "tiny_period.csv")


def test_prometheus_nan_timestamp(cli, user_error, f):
    user_error(cli("forecast", "prom_nan_time.json"), "prom_nan_time.json")


def test_prometheus_points_far_apart(cli, user_error, f):
    user_error(cli("forecast", "prom_far.json"), "prom_far.json")


def test_prometheus_negative_values_name_the_file(cli, user_error, f):
    user_error(cli("forecast", "prom_neg.json"), "prom_neg.json")


def test_all_missing_series_names_the_file(cli, user_error, f):
    user_error(cli("forecast", "all_nan.csv"), "all_nan.csv")


def test_optimize_all_missing_series(cli, user_error, f):
    user_error(cli("optimize", "--series", "all_nan.csv", "--horizon", "1h", *FAST_OPT, "--cold-start-s", "100"),
               "all_nan.csv")


# -------------------------------------------------------------------------- simulate --schedule / --preemptions


def test_binary_schedule(cli, user_error, f):
    user_error(cli("simulate", "--trace", "trace.csv", "--schedule", "sched_bin.csv"), "sched_bin.csv")


def test_binary_preemptions(cli, user_error, f):
    user_error(cli("simulate", "--trace", "trace.csv", "--replicas", "1", "--preemptions", "pre_bin.txt"),
               "pre_bin.txt")


def test_schedule_line_number_after_blank_lines(cli, user_error, f):
    user_error(cli("simulate", "--trace", "trace.csv", "--schedule", "sched_blank.csv"), "sched_blank.csv", "line 5")


def test_schedule_short_row(cli, user_error, f):
    user_error(cli("simulate", "--trace", "trace.csv", "--schedule", "sched_short.csv"), "sched_short.csv", "line 2")


# ------------------------------------------------------------------------------ points (perf/validate/calibrate)


def test_points_with_byte_order_mark(cli, f):
    res = cli("perf", "--points", "points_bom.csv")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    rows = list(csv.DictReader(io.StringIO(res.out)))
    assert rows[0]["engine"] == "vllm", rows[0]


@pytest.mark.parametrize("cmd", ["perf", "validate", "calibrate"])
def test_binary_points_file(cli, user_error, f, cmd):
    argv = ("perf", "--points", "points_bin.csv") if cmd == "perf" else (cmd, "points_bin.csv")
    user_error(cli(*argv), "points_bin.csv")


def test_points_duplicate_column(cli, user_error, f):
    user_error(cli("validate", "points_dupcol.csv"), "points_dupcol.csv", "isl")


@pytest.mark.parametrize("name", ["zero", "neg", "nan", "inf"])
def test_validate_bad_measured_value(cli, user_error, f, name):
    user_error(cli("validate", f"m_{name}.csv", "--json"), f"m_{name}.csv:2", "value")


@pytest.mark.parametrize("name", ["zero", "neg", "nan", "inf"])
def test_calibrate_bad_measured_value(cli, user_error, f, name):
    user_error(cli("calibrate", f"m_{name}.csv", "--max-evals", "1", "-o", "fit.yaml"), f"m_{name}.csv:2", "value")
    assert not (f / "fit.yaml").exists()


def test_validate_unknown_model_row(cli, user_error, f):
    user_error(cli("validate", "m_bogus_model.csv", "--json"), "bogus-model")


def test_calibrate_unknown_model_row(cli, user_error, f):
    user_error(cli("calibrate", "m_bogus_model.csv", "--max-evals", "1", "-o", "fit.yaml"), "bogus-model")
    assert not (f / "fit.yaml").exists()


def test_validate_unknown_engine_row_names_the_line(cli, user_error, f):
    (f / "m_engine.csv").write_text(MEASURED_HEADER + "\n" + VLLM_POINT + ",output_throughput,20000\n"
                                    + VLLM_POINT.replace("vllm", "bogus") + ",output_throughput,20000\n")
    user_error(cli("validate", "m_engine.csv"), "m_engine.csv:3", "engine", "bogus")


def test_calibrate_refuses_rows_of_several_engines(cli, user_error, f):
    (f / "m_engines.csv").write_text(MEASURED_HEADER + "\n" + VLLM_POINT + ",output_throughput,20000\n"
                                     + VLLM_POINT.replace("vllm", "trtllm") + ",output_throughput,20000\n")
    user_error(cli("calibrate", "m_engines.csv", "--max-evals", "1", "-o", "fit.yaml"), "m_engines.csv",
               "trtllm", "vllm")
    assert not (f / "fit.yaml").exists()


def test_calibrate_with_nothing_predictable_prints_one_line(cli, user_error, f):
    (f / "m_oom.csv").write_text(MEASURED_HEADER + "\ntrtllm,llama-3.1-70b,l4,1,1,fp16,128,128,offline,,,"
                                 "output_throughput,2000\n")
    user_error(cli("calibrate", "m_oom.csv", "-o", "fit.yaml"), "m_oom.csv", "line 2", "exceed")
    assert not (f / "fit.yaml").exists()


@pytest.mark.parametrize("evals", ["0", "-5"])
def test_calibrate_max_evals_must_be_positive(cli, user_error, f, evals):
    user_error(cli("calibrate", "m_good.csv", "--max-evals", evals, "-o", "fit.yaml"), "max-evals")


# ----------------------------------------------------------------------------------------- option values


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_convert_time_compress_not_finite(cli, user_error, f, value):
    user_error(cli("traffic", "convert", "trace.csv", "-o", "out.csv", "--time-compress", value), "compress")
    assert not (f / "out.csv").exists()


@pytest.mark.parametrize("src,value", [("trace.csv", "nan"), ("trace.csv", "inf"), ("series.csv", "nan")])
def test_convert_rate_multiply_not_finite(cli, user_error, f, src, value):
    user_error(cli("traffic", "convert", src, "-o", "out.csv", "--rate-multiply", value), "multipl")
    assert not (f / "out.csv").exists()


@pytest.mark.parametrize("cmd", ["simulate", "compare"])
def test_simulate_rate_multiply_not_finite(cli, user_error, f, cmd):
    extra = ("--replicas", "1") if cmd == "simulate" else ("--strategies", "static-peak")
    user_error(cli(cmd, "--trace", "trace.csv", *extra, "--rate-multiply", "nan"), "multipl")


def test_max_bad_rows_nan(cli, user_error, f):
    user_error(cli("traffic", "summarize", "trace.csv", "--max-bad-rows", "nan"), "max-bad-rows")


@pytest.mark.parametrize("argv", [
    ("traffic", "convert", "trace.csv", "-o", "out.csv", "--seed", "-1", "--rate-multiply", "0.5"),
    ("traffic", "synth", "--days", "1", "-o", "out.csv", "--seed", "-1"),
], ids=["convert", "synth"])
def test_negative_seed(cli, user_error, f, argv):
    user_error(cli(*argv), "seed")


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--days", "inf", "days"), ("--base-rps", "inf", "base"), ("--peak-hour", "nan", "peak")])
def test_synth_not_finite(cli, user_error, f, option, value, needle):
    user_error(cli("traffic", "synth", "-o", "out.csv", option, value), needle)
    assert not (f / "out.csv").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_forecast_history_days_not_finite(cli, user_error, f, value):
    user_error(cli("forecast", "series.csv", "--backtest", "--horizon", "1h", "--history-days", value), "history")


@pytest.mark.parametrize(("option", "needle"), [("--cold-start-s", "cold"), ("--load-gbps", "load")])
def test_simulate_nan_cold_start(cli, user_error, f, option, needle):
    user_error(cli("simulate", "--trace", "trace.csv", "--replicas", "1", option, "nan"), needle)


@pytest.mark.parametrize("argv", [
    ("simulate", "--trace", "trace.csv", "--replicas", "1", "--ttft-p95-ms", "nan"),
    ("plan", *FAST_PLAN, "--ttft-p95-ms", "nan"),
], ids=["simulate", "plan"])
def test_nan_slo_target(cli, user_error, f, argv):
    res = cli(*argv)
    user_error(res, "ttft")
    assert res.code == 2


@pytest.mark.parametrize("cmd", ["simulate", "compare"])
def test_negative_budget(cli, user_error, f, cmd):
    extra = ("--policy", "budget") if cmd == "simulate" else ("--strategies", "budget")
    user_error(cli(cmd, "--trace", "trace.csv", *extra, "--budget-usd-per-hour", "-5"), "budget")


def test_simulate_negative_reserved_with_policy(cli, user_error, f):
    user_error(cli("simulate", "--trace", "trace.csv", "--policy", "reactive", "--reserved", "-1"), "reserved")


@pytest.mark.parametrize(("option", "value", "needle"), [("--spot-fraction", "2", "spot"),
                                                         ("--reserved", "-1", "reserved")])
def test_compare_validates_options_before_work(cli, user_error, f, option, value, needle):
    user_error(cli("compare", "--trace", "trace.csv", "--strategies", "static-spot", option, value), needle)


@pytest.mark.parametrize("option", ["--rate", "--isl"])
def test_plan_infinite_rate_or_length(cli, user_error, f, option):
    user_error(cli("plan", *FAST_PLAN, option, "inf"), option)


@pytest.mark.parametrize("value", ["-200", "nan"])
def test_plan_overhead_pct(cli, user_error, f, value):
    user_error(cli("plan", *FAST_PLAN, "--overhead-pct", value, "--json"), "overhead")


@pytest.mark.parametrize(("train", "evald"), [("nan", "1"), ("1", "nan"), ("inf", "1")])
def test_optimize_window_not_finite(cli, user_error, f, train, evald):
    user_error(cli("optimize", "--series", "series.csv", "--train-days", train, "--eval-days", evald), "days")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_optimize_cold_start_not_finite(cli, user_error, f, value):
    user_error(cli("optimize", "--series", "series.csv", "--horizon", "1h", *FAST_OPT,
                   "--cold-start-s", value), "cold")


@pytest.mark.parametrize(("value", "extra"), [("0", ()), ("0", ("--cold-start-s", "100")),
                                              ("-1", ("--cold-start-s", "100"))], ids=["0", "0-cold-start", "-1"])
def test_optimize_offers_must_be_positive(cli, user_error, f, value, extra):
    res = cli("optimize", "--series", "series.csv", "--horizon", "1h", "--gpu", "h100", "--cloud", "aws",
              "--offers", value, *extra)
    user_error(res, "--offers")
    assert res.code == 2


def test_optimize_validates_horizon_before_work(cli, user_error, f):
    user_error(cli("optimize", "--series", "series.csv", "--horizon", "0", *FAST_OPT), "--horizon")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_perf_requests_must_be_positive(cli, user_error, f, value):
    user_error(cli("perf", *PERF, "--requests", value), "requests")


def test_perf_out_without_points(cli, user_error, f):
    user_error(cli("perf", *PERF, "--out", "pred.csv"), "--out")


@pytest.mark.parametrize("argv", [("perf", *PERF[:-4], "--isl", "abc"), ("plan", "--bogus-option")],
                         ids=["bad-int", "unknown-option"])
def test_usage_errors_are_one_line(cli, user_error, f, argv):
    user_error(cli(*argv))


# ------------------------------------------------------------------------------------------ catalog files


@pytest.mark.parametrize("data", [bytes(range(128, 256)), "offers:\n  - id: caf\xe9\n".encode("latin-1")],
                         ids=["binary", "latin-1"])
def test_catalog_not_utf8(cli, user_error, f, data):
    _catalog(f, "cat", {"x.yaml": data})
    user_error(cli("catalog", "gpus", "--catalog", "cat"), "x.yaml")


def test_catalog_gpu_tflops_nan(cli, user_error, f):
    _catalog(f, "cat", {"g.yaml": _gpu_yaml("nangpu", tflops=".nan")})
    user_error(cli("catalog", "gpus", "--catalog", "cat"), "g.yaml", "nangpu", "tflops")


def test_catalog_gpu_memory_inf(cli, user_error, f):
    _catalog(f, "cat", {"g.yaml": _gpu_yaml("infgpu", memory=".inf")})
    user_error(cli("catalog", "gpus", "--catalog", "cat"), "g.yaml", "infgpu", "memory_gib")


def test_catalog_offer_price_inf(cli, user_error, f):
    _catalog(f, "cat", {"o.yaml": offer_yaml("inf_offer", on_demand=".inf")})
    user_error(cli("catalog", "offers", "--catalog", "cat"), "o.yaml", "inf_offer", "on_demand")


@pytest.mark.parametrize(("heads", "kv"), [("8", "32"), ("32", "7")], ids=["kv-gt-heads", "kv-not-divisor"])
def test_catalog_model_kv_heads(cli, user_error, f, heads, kv):
    _catalog(f, "cat", {"m.yaml": _model_yaml("test-model", heads, kv)})
    user_error(cli("catalog", "models", "--catalog", "cat"), "m.yaml", "test-model", "kv_heads")


def test_catalog_bool_for_integer(cli, user_error, f):
    _catalog(f, "cat", {"m.yaml": _model_yaml("test-model", "true", "1")})
    user_error(cli("catalog", "models", "--catalog", "cat"), "m.yaml", "test-model", "num_attention_heads")


def test_empty_catalog_option(cli, user_error, f):
    _catalog(f / "outdir", "nested", {"o.yaml": offer_yaml("stray_offer")})
    res = cli("catalog", "offers", "--catalog", "", "--json")
    user_error(res, "catalog")


# ---------------------------------------------------------------------------- engine profile files (--engine)
# Every field of a profile is range-checked, not only the fitted efficiency factors.


def _profile(directory: Path, name: str, field: str, value: str) -> str:
    from fleetwise.perf.profile import get_profile

    lines = [ln for ln in get_profile("trtllm").to_yaml().splitlines() if not ln.startswith(f"{field}:")]
    (directory / name).write_text("\n".join([*lines, f"{field}: {value}"]) + "\n", encoding="utf-8")
    return name


@pytest.mark.parametrize(("field", "value"), [("max_batch", "abc"), ("kv_block_tokens", "0"), ("max_batch", "-1"),
                                              ("kv_mem_fraction", "5")])
def test_engine_profile_bad_field(cli, user_error, f, field, value):
    # a distinct file name per case: get_profile is lru_cached by the path string
    name = _profile(f, f"prof_{field}_{value.lstrip('-')}.yaml", field, value)
    user_error(cli("perf", *PERF, "--engine", name, "--json"), name, field)


def test_engine_profile_not_utf8(cli, user_error, f):
    (f / "prof_binary.yaml").write_bytes(bytes(range(128, 256)))
    user_error(cli("perf", *PERF, "--engine", "prof_binary.yaml"), "prof_binary.yaml")


# ---------------------------------------------------------------------- guards: cases that already behave


@pytest.mark.parametrize(("argv", "needles"), [
    (("traffic", "summarize", "trace_bom.csv", "--json"), None),
    (("traffic", "summarize", "garbage.csv"), ("garbage.csv",)),
    (("traffic", "summarize", "empty.csv"), ("empty.csv", "empty")),
    (("traffic", "summarize", "header_only.csv"), ("header_only.csv", "no usable rows")),
    (("traffic", "summarize", "neg_tokens.csv"), ("neg_tokens.csv", "line 2", "input_tokens")),
    (("simulate", "--trace", "trace.csv", "--replicas", "1", "--priorities", "interactive=nan"), ("share",)),
    (("simulate", "--trace", "trace.csv", "--schedule", "sched_nan.csv"), ("sched_nan.csv", "line 2", "on_demand")),
    (("simulate", "--trace", "trace.csv", "--replicas", "1", "--preemptions", "pre_neg.txt"),
     ("pre_neg.txt", "line 1")),
    (("forecast", "series.csv", "--quantiles", "0,1"), ("quantiles",)),
    (("catalog", "offers", "--catalog", "badyaml"), ("x.yaml:3", "YAML")),
], ids=["trace-bom", "binary-trace", "empty-trace", "header-only", "negative-tokens", "priorities-nan",
        "schedule-nan", "preemption-negative", "quantiles-0-1", "catalog-bad-yaml"])
def test_already_handled(cli, user_error, f, argv, needles):
    (f / "trace_bom.csv").write_text("\ufeff" + TRACE_HEADER + "\n" + "\n".join(_trace_rows(50)) + "\n")
    (f / "garbage.csv").write_bytes(bytes(range(256)) * 8)
    (f / "empty.csv").write_text("")
    (f / "header_only.csv").write_text(TRACE_HEADER + "\n")
    (f / "neg_tokens.csv").write_text(TRACE_HEADER + "\n" + "\n".join(f"{k},-5,3" for k in range(20)) + "\n")
    (f / "sched_nan.csv").write_text("time_s,on_demand\n0,nan\n")
    (f / "pre_neg.txt").write_text("-5\n")
    _catalog(f, "badyaml", {"x.yaml": "offers:\n  - id: a\n   bad: indent\n  - [\n"})
    res = cli(*argv)
    if needles is None:
        assert res.code == 0 and "Traceback" not in res.err, res.err
    else:
        user_error(res, *needles)
