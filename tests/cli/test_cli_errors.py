"""Bad input: ONE line on stderr starting 'fleetwise: error:', a non-zero exit, no traceback anywhere.

More cases, one per input the fuzzing found, are in test_bad_input_fuzz.py.
"""

from __future__ import annotations

import re

import pytest
from cli_helpers import offer_yaml

BAD_CATALOG = ("offers.yaml", "bad_offer", "on_demand")  # the file, the entry and the field
FAST = ("--gpu", "h100", "--cloud", "aws", "--precision", "fp8", "--tp", "4")
PERF = ("--model", "llama-3.1-8b", "--gpu", "H100", "--precision", "fp8", "--isl", "128", "--osl", "128")
POINTS_HEADER = "engine,model,gpu,num_gpus,tp,precision,isl,osl,mode,rate_qps,batch\n"
GOOD_POINT = "trtllm,llama-3.1-8b,h100-sxm,1,1,fp8,128,128,offline,,\n"


@pytest.fixture
def files(tmp_path):
    """Malformed inputs, written into the (current) scratch directory."""
    (tmp_path / "missing_isl.csv").write_text(
        "engine,model,gpu,num_gpus,tp,precision,osl,mode\ntrtllm,llama-3.1-8b,h100-sxm,1,1,fp8,128,offline\n"
    )
    (tmp_path / "bad_isl.csv").write_text(
        POINTS_HEADER + GOOD_POINT + "trtllm,llama-3.1-8b,h100-sxm,1,1,fp8,lots,128,offline,,\n"
    )
    (tmp_path / "points.csv").write_text(POINTS_HEADER + GOOD_POINT)
    (tmp_path / "measured.csv").write_text(
        POINTS_HEADER.rstrip("\n") + ",metric,value\n"
        + GOOD_POINT.rstrip("\n") + ",output_throughput,20000\n"
    )
    (tmp_path / "foobar.csv").write_text("foo,bar\n1,2\n3,4\n5,6\n")
    trace = "timestamp,input_tokens,output_tokens\n"
    (tmp_path / "one_row.csv").write_text(trace + "0,100,50\n")
    (tmp_path / "same_time.csv").write_text(trace + "5,100,50\n5,200,50\n5,10,5\n")
    (tmp_path / "trace.csv").write_text(trace + "".join(f"{k * 0.5},{500 + k},{100 + k}\n" for k in range(200)))
    bad = tmp_path / "badcat"
    bad.mkdir()
    (bad / "offers.yaml").write_text(offer_yaml("bad_offer", on_demand="-5.0"))
    return tmp_path


# (id, argv, substrings the message must contain (case-insensitive), exit code)
CASES = [
    ("perf-unknown-model", ("perf", "--model", "no-such-model", "--gpu", "H100", "--precision", "fp8"),
     ("no-such-model",), 2),
    ("plan-unknown-model", ("plan", "--model", "no-such-model", *FAST), ("no-such-model",), 2),
    ("perf-unknown-gpu", ("perf", "--model", "llama-3.1-8b", "--gpu", "no-such-gpu", "--precision", "fp8"),
     ("no-such-gpu",), 2),
    ("plan-unknown-gpu", ("plan", "--gpu", "no-such-gpu"), ("no-such-gpu",), 2),
    ("perf-unknown-precision", ("perf", "--model", "llama-3.1-8b", "--gpu", "H100", "--precision", "fp3"),
     ("fp3",), 2),
    ("plan-unknown-precision", ("plan", "--gpu", "h100", "--cloud", "aws", "--precision", "fp3"),
     ("fp3",), 2),
    ("impossible-slo", ("plan", *FAST, "--ttft-p95-ms", "1", "--tpot-p95-ms", "1"), ("TTFT",), 3),
    ("zero-slo", ("plan", *FAST, "--ttft-p95-ms", "0"), ("SLO",), 2),
    ("bad-percentile", ("plan", *FAST, "--percentile", "97"), ("percentile",), 2),
    ("points-missing-column", ("perf", "--points", "missing_isl.csv"), ("missing_isl.csv", "isl"), 2),
    ("points-nonexistent", ("perf", "--points", "no-such-points.csv"), ("no-such-points.csv",), 2),
    ("validate-nonexistent", ("validate", "no-such-points.csv"), ("no-such-points.csv",), 2),
    ("validate-without-metric", ("validate", "points.csv"), ("points.csv", "metric"), 2),
    ("calibrate-without-metric", ("calibrate", "points.csv"), ("points.csv", "metric"), 2),
    ("plan-bad-catalog", ("plan", "--catalog", "badcat", *FAST), BAD_CATALOG, 2),
    ("catalog-bad-catalog", ("catalog", "offers", "--catalog", "badcat"), BAD_CATALOG, 2),
    ("catalog-missing-dir", ("catalog", "offers", "--catalog", "no-such-dir"), ("no-such-dir",), 2),
    ("catalog-bad-section", ("catalog", "bogus"), ("bogus",), 2),
    ("plan-tier-bogus", ("plan", *FAST, "--tier", "bogus"), ("tier", "bogus", "on_demand"), 2),
    ("plan-view-bogus", ("plan", *FAST, "--view", "bogus"), ("view", "bogus"), 2),
    ("plan-tp-0", ("plan", *FAST[:-2], "--tp", "0"), ("--tp",), 2),
    ("plan-tp-not-a-number", ("plan", *FAST[:-2], "--tp", "four"), ("--tp",), 2),
    ("plan-max-batch-0", ("plan", *FAST, "--max-batch", "0"), ("--max-batch",), 2),
    ("plan-rate-0", ("plan", *FAST, "--rate", "0"), ("rate",), 2),
    ("plan-unknown-workload", ("plan", *FAST, "--workload", "bogus"), ("bogus",), 2),
    ("plan-unknown-engine", ("plan", *FAST, "--engine", "bogus"), ("bogus",), 2),
    ("plan-csv-missing-dir", ("plan", *FAST, "--csv", "no-such-dir/out.csv"), ("no-such-dir/out.csv",), 2),
    ("perf-out-missing-dir", ("perf", "--points", "points.csv", "--out", "no-such-dir/pred.csv"),
     ("no-such-dir/pred.csv",), 2),
    ("perf-rate-and-batch", ("perf", *PERF, "--rate", "5", "--batch", "4"), ("--rate", "--batch"), 2),
    ("perf-rate-0", ("perf", *PERF, "--rate", "0"), ("rate",), 2),
    ("perf-batch-0", ("perf", *PERF, "--batch", "0"), ("--batch",), 2),
    ("perf-isl-0", ("perf", "--model", "llama-3.1-8b", "--gpu", "H100", "--precision", "fp8", "--isl", "0"),
     ("length",), 2),
    ("perf-no-model", ("perf",), ("--model",), 2),
    ("perf-unknown-engine", ("perf", *PERF, "--engine", "bogus"), ("bogus",), 2),
    ("perf-missing-engine-file", ("perf", *PERF, "--engine", "no-such-profile.yaml"),
     ("no-such-profile.yaml",), 2),
    ("perf-does-not-fit", ("perf", "--model", "llama-3.1-70b", "--gpu", "l4", "--precision", "bf16"),
     ("l4",), 3),
    ("calibrate-tier-bogus", ("calibrate", "measured.csv", "--tiers", "bogus"), ("tier", "bogus"), 2),
    ("synth-peak-hour", ("traffic", "synth", "--peak-hour", "99", "-o", "s.csv"), ("peak_hour", "[0, 24)", "99"),
     None),
    ("summarize-unknown-columns", ("traffic", "summarize", "foobar.csv"),
     ("foobar.csv", "'foo', 'bar'", "'timestamp', 'rate_rps'", "--value-col"), 2),
    ("series-unknown-columns", ("traffic", "summarize", "foobar.csv", "--format", "series"),
     ("foobar.csv", "'foo', 'bar'", "value column", "--time-col"), 2),
    ("forecast-unknown-columns", ("forecast", "foobar.csv"), ("foobar.csv", "'foo', 'bar'"), 2),
    ("compare-spot-without-spot-prices", ("compare", "--trace", "trace.csv", "--cloud", "lambda", "--strategies",
                                          "static-peak,static-spot"),
     ("static-spot", "lambda/", "no spot price", "--cloud aws"), None),
    ("simulate-spot-without-spot-prices", ("simulate", "--trace", "trace.csv", "--cloud", "lambda", "--policy",
                                           "reactive-spot"), ("--policy reactive-spot", "no spot price"), None),
]


@pytest.mark.parametrize("trace", ["one_row.csv", "same_time.csv"])
@pytest.mark.parametrize("argv", [("traffic", "summarize"), ("traffic", "convert", "-o", "out.csv"),
                                  ("traffic", "convert", "--freq", "1min", "-o", "out.csv"), ("simulate", "--trace"),
                                  ("forecast",)],
                         ids=["summarize", "convert", "convert-freq", "simulate", "forecast"])
def test_traces_without_a_rate_are_refused_alike(cli, user_error, files, argv, trace):
    """One check for every command that reads a trace as traffic: the same line from each, nothing written."""
    reason = "at least two requests" if trace == "one_row.csv" else "arrive at the same time"
    user_error(cli(*argv, trace), trace, reason)
    assert not (files / "out.csv").exists()


@pytest.mark.parametrize(("argv", "needles", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(cli, user_error, files, argv, needles, code):
    res = cli(*argv)
    user_error(res, *needles)
    if code is not None:
        assert res.code == code, res.err


def test_malformed_points_names_file_line_and_field(cli, user_error, files):
    line = user_error(cli("perf", "--points", "bad_isl.csv"))
    assert re.search(r"bad_isl\.csv:3\b", line), line  # the file and the (1-based, header = 1) line
    assert "'isl'" in line or "field isl" in line, line


def test_console_script_reports_user_errors_on_one_line(script, user_error):
    """The installed entry point, not just main(): exit code 2 and one clean line."""
    res = script("perf", "--model", "no-such-model", "--gpu", "H100")
    user_error(res, "no-such-model")
    assert res.code == 2
    assert res.out == ""


# ------------------------------------------------------------------------------ formerly known gaps, now fixed


def test_perf_tp_0_is_rejected(cli, user_error):
    user_error(cli("perf", *PERF, "--tp", "0"), "tp")


def test_perf_gpus_0_is_rejected(cli, user_error):
    user_error(cli("perf", *PERF, "--gpus", "0"), "gpus")


def test_plan_osl_0_is_rejected(cli, user_error):
    res = cli("plan", *FAST, "--osl", "0")
    line = user_error(res)
    assert "osl" in line.lower() or "output" in line.lower(), line


def test_plan_negative_isl_is_rejected(script, user_error):
    res = script("plan", *FAST, "--isl", "-5")
    line = user_error(res)
    assert "isl" in line.lower() or "input" in line.lower(), line
    assert res.code == 2


def test_calibrate_output_in_missing_directory(cli, user_error, files):
    user_error(cli("calibrate", "measured.csv", "--max-evals", "1", "-o", "no-such-dir/profile.yaml"),
               "no-such-dir/profile.yaml")
