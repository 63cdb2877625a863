"""``fleetwise replay``: the command against instant endpoints on loopback (in-process, and one real
interrupt through the console script).

Traces are small generic CSVs written into the test's scratch directory and read with the same trace
options simulate takes (--time-col/--input-col/--output-col).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetwise.replay.instant import InstantConfig, serve_in_thread

COLS = ("--time-col", "arr", "--input-col", "inp", "--output-col", "out")
SIMULATE_KEYS = {"requests", "completed", "ttft_ms", "tpot_ms", "slo_attainment", "duration_s"}
REPLAY_KEYS = SIMULATE_KEYS | {"failed", "failed_by_reason", "e2e_ms", "itl_ms", "achieved_rps", "late_sends",
                               "client_lag_ms", "time_compress", "urls"}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """``cli("replay", ...)`` -> Result(code, out, err): fleetwise.cli.main in-process, from a scratch dir."""
    from fleetwise.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["fleetwise", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def write_trace(path: Path, n: int = 12, span_s: float = 0.3, isl: int = 20, osl: int = 4) -> Path:
    rows = [f"{span_s * k / max(n - 1, 1):.6f},{isl},{osl}" for k in range(n)]
    path.write_text("arr,inp,out\n" + "\n".join(rows) + "\n")
    return path


def one_error_line(res: Result, *needles: str) -> str:
    assert res.code == 2, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetwise: error: "), res.err
    assert "Traceback" not in res.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def server():
    with serve_in_thread(InstantConfig(token_delay_s=0.001)) as s:
        yield s


def test_json_has_simulates_keys_and_the_csv_one_row_per_request(cli, server, tmp_path):
    trace = write_trace(tmp_path / "t.csv")
    res = cli("replay", "--trace", trace, *COLS, "--url", server.url, "--json", "--out", "requests.csv")
    assert res.code == 0, res.err
    s = json.loads(res.out)
    assert REPLAY_KEYS <= set(s)
    assert (s["requests"], s["completed"], s["failed"], s["failed_by_reason"]) == (12, 12, 0, {})
    assert set(s["ttft_ms"]) == {"p50", "p95", "p99"} and set(s["client_lag_ms"]) == {"p50", "p99"}
    assert s["urls"] == [server.url] and s["model"] == "instant"
    assert s["slo"] == {"ttft_ms": 1000.0, "tpot_ms": 50.0}
    with (tmp_path / "requests.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "arrival_s", "sent_s", "input_tokens", "output_tokens", "ttft_ms",
                             "tpot_ms", "e2e_ms", "status"]
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    assert "fleetwise: replay: 12/12 sent" in res.err  # not a terminal: plain progress lines


def test_stated_mix_sends_repeats_and_temperatures_and_is_echoed(cli, server, tmp_path):
    trace = write_trace(tmp_path / "t.csv", n=40)
    server.record = True
    res = cli("replay", "--trace", trace, *COLS, "--url", server.url, "--json", "--quiet",
              "--deterministic-share", "0.5", "--duplicate-share", "0.3", "--temperature", "0.9", "--seed", "4")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["mix"] == {"deterministic_share": 0.5, "temperature": 0.9, "duplicate_share": 0.3,
                          "duplicate_window": 50, "seed": 4}
    prompts = [tuple(b["prompt"]) for b in server.requests]
    assert len(prompts) == 40 and 4 <= 40 - len(set(prompts)) <= 20  # ~30% repeats
    assert {b["temperature"] for b in server.requests} == {0, 0.9}


def test_table_report_window_limit_and_several_urls(cli, server, tmp_path):
    trace = write_trace(tmp_path / "t.csv", n=20, span_s=1.9)
    with serve_in_thread() as other:
        res = cli("replay", "--trace", trace, *COLS, "--url", server.url, "--url", other.url + "/v1/",
                  "--model", "m", "--start", "0.5s", "--duration", "1s", "--limit", "8",
                  "--time-compress", "4", "--report", "replay.html", "--ttft-p95-ms", "500",
                  "--tpot-p95-ms", "20", "--quiet")
    assert res.code == 0, res.err
    flat = " ".join(res.out.split())
    assert "requests / sent 8 / 8" in flat and "per endpoint" in flat and other.url in flat
    assert "SLO met (TTFT <= 500 ms, TPOT <= 20 ms)" in flat
    assert "fleetwise: replay:" not in res.err  # --quiet
    page = (tmp_path / "replay.html").read_text()
    assert page.count("<img") == 2 and "latency CDFs" in page and "Endpoints" in page


def test_failures_show_by_reason_in_json_and_warnings(cli, tmp_path):
    trace = write_trace(tmp_path / "t.csv", n=10)
    fault = InstantConfig(fault=lambda n, body: "http_503" if body["prompt"][0] % 2 else None)
    with serve_in_thread(fault) as s:
        res = cli("replay", "--trace", trace, *COLS, "--url", s.url, "--json", "--quiet")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["failed"] == 5 and out["failed_by_reason"] == {"http_503": 5} and out["completed"] == 5
    assert "5 failed as http_503; first:" in " ".join(res.err.split())


@pytest.mark.parametrize("args, needles", [
    (("--url", "ftp://127.0.0.1:1"), ("--url", "http://")),
    (("--url", "http://127.0.0.1:1", "--time-compress", "0"), ("--time-compress",)),
    (("--url", "http://127.0.0.1:1", "--time-compress", "-2"), ("--time-compress",)),
    (("--url", "http://127.0.0.1:1", "--limit", "0"), ("--limit",)),
    (("--url", "http://127.0.0.1:1", "--start", "1h"), ("no requests to replay",)),
    (("--url", "http://127.0.0.1:1", "--start", "soon"), ("--start",)),
    (("--url", "http://127.0.0.1:1", "--api", "embeddings"), ("--api",)),
    (("--url", "http://127.0.0.1:1", "--max-in-flight", "0"), ("--max-in-flight",)),
    (("--url", "http://127.0.0.1:1", "--duplicate-share", "1.5"), ("--duplicate-share",)),
    (("--url", "http://127.0.0.1:1", "--deterministic-share", "-0.1"), ("--deterministic-share",)),
    (("--url", "http://127.0.0.1:1", "--temperature", "0"), ("--temperature",)),
    (("--url", "http://127.0.0.1:1", "--duplicate-window", "0"), ("--duplicate-window",)),
])
def test_bad_options_are_one_line_and_exit_2(cli, tmp_path, args, needles):
    trace = write_trace(tmp_path / "t.csv")
    one_error_line(cli("replay", "--trace", trace, *COLS, "--model", "m", *args), *needles)


def test_unreachable_endpoint_without_model_is_one_clear_line(cli, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    trace = write_trace(tmp_path / "t.csv")
    line = one_error_line(cli("replay", "--trace", trace, *COLS, "--url", f"http://127.0.0.1:{port}"))
    assert f"cannot reach http://127.0.0.1:{port}/v1/models" in line and "--model" in line


def test_interrupt_stops_sending_and_writes_what_was_measured(tmp_path):
    exe = shutil.which("fleetwise")
    if exe is None:
        pytest.skip("the fleetwise console script is not on PATH (pip install -e .)")
    trace = write_trace(tmp_path / "t.csv", n=100, span_s=20.0)
    with serve_in_thread(InstantConfig(first_token_delay_s=1.0)) as s:
        command = [exe, "replay", "--trace", str(trace), *COLS, "--url", s.url, "--json", "--out",
                   "requests.csv"]
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + 20
        while s.count < 3 and time.monotonic() < deadline:  # a few requests are in flight
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["interrupted"] and summary["cancelled"] >= 1 and summary["not_sent"] > 50
    assert summary["failed"] == 0
    assert "interrupted" in err and "Traceback" not in err
    with (tmp_path / "requests.csv").open(newline="") as handle:
        statuses = [r["status"] for r in csv.DictReader(handle)]
    assert len(statuses) == 100 and "cancelled" in statuses and statuses[-1] == "not_sent"


# -------------------------------------------------------------------------------------------- --compare-sim


def write_varied_trace(path: Path, n: int = 30, rate: float = 8.0, seed: int = 1) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    isl = rng.integers(100, 1500, n)
    osl = rng.integers(40, 200, n)
    rows = [f"{a - arrival[0]:.6f},{i},{o}" for a, i, o in zip(arrival, isl, osl)]
    path.write_text("arr,inp,out\n" + "\n".join(rows) + "\n")
    return path


def test_compare_sim_against_emulated_workers_adds_simulated_and_gap(cli, tmp_path):
    """Two emulated llama-3.1-8b fp8 H100 vLLM workers (the defaults of both) in this process, 10x faster than
    real time: the measured TPOT is the step model's, so the simulation of the same requests agrees."""
    from fleetwise.emulate import EmulatorConfig, WorkerThread

    trace = write_varied_trace(tmp_path / "t.csv")
    with WorkerThread(EmulatorConfig(time_scale=10.0), n=2) as fleet:
        urls = [a for u in fleet.urls for a in ("--url", u)]
        res = cli("replay", "--trace", trace, *COLS, *urls, "--time-compress", "10", "--compare-sim", "--json",
                  "--quiet")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["completed"] == 30 and out["model"] == "llama-3.1-8b"
    sim = out["simulated"]
    assert SIMULATE_KEYS <= set(sim) and sim["requests"] == 30 and sim["completed"] == 30
    assert sim["fleet"] == {"model": "llama-3.1-8b", "gpu": "h100", "gpus": 1, "precision": "fp8",
                            "engine": "vllm", "engines": 2, "max_num_seqs": None}
    gap = out["gap"]
    assert set(gap) == {"ttft_ms", "tpot_ms"}
    assert all(set(row) == {"p50", "p95", "p99"} for row in gap.values())
    expected = (out["tpot_ms"]["p50"] - sim["tpot_ms"]["p50"]) / sim["tpot_ms"]["p50"]
    assert gap["tpot_ms"]["p50"] == pytest.approx(expected, abs=1e-4)  # --json rounds
    assert abs(gap["tpot_ms"]["p50"]) < 0.25, gap


def test_compare_sim_table_and_report(cli, tmp_path):
    from fleetwise.emulate import EmulatorConfig, WorkerThread

    trace = write_varied_trace(tmp_path / "t.csv", n=12)
    with WorkerThread(EmulatorConfig(time_scale=10.0), n=1) as fleet:
        res = cli("replay", "--trace", trace, *COLS, "--url", fleet.urls[0], "--time-compress", "10",
                  "--compare-sim", "--engines", "1", "--max-num-seqs", "64", "--report", "r.html", "--quiet")
    assert res.code == 0, res.err
    flat = " ".join(res.out.split())
    assert "measured vs simulated (1 x llama-3.1-8b on 1 x h100, fp8, vllm)" in flat
    assert "metric percentile measured simulated gap %" in flat and "TPOT ms p50" in flat
    assert "Measured vs simulated" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("args, needles", [
    (("--model", "llama-3.1-8b", "--gpu", "h100x"), ("unknown gpu 'h100x'",)),
    (("--model", "llama-3.1-8b", "--precision", "fp9"), ("unknown precision 'fp9'",)),
    (("--model", "llama-3.1-8b", "--engine", "vllmx"), ("unknown engine 'vllmx'",)),
    (("--model", "my-finetune",), ("--compare-sim", "unknown model 'my-finetune'", "--model")),
    ((), ("--compare-sim", "unknown model 'instant'", "served by http://127.0.0.1:", "--model")),
])
def test_compare_sim_checks_the_fleet_before_sending_anything(cli, server, tmp_path, args, needles):
    trace = write_trace(tmp_path / "t.csv")
    one_error_line(cli("replay", "--trace", trace, *COLS, "--url", server.url, "--compare-sim", *args), *needles)
    assert server.count == 0  # no completion request went out
