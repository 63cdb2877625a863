"""Measured vs simulated: a replay against emulated workers (a separate process, as in production) and the
simulation of the same requests on the same fleet agree, since both run the same step model."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from fleetwise.replay import replay_trace
from fleetwise.replay.compare import SimulatedFleet, compare_with_simulation, relative_gaps, simulate_replayed
from fleetwise.traffic.records import RequestTrace

SCALE = 4.0


@pytest.fixture(scope="module")
def emulator():
    """Two emulated llama-3.1-8b fp8 H100 workers in their own process, 4x faster than real time."""
    proc = subprocess.Popen([sys.executable, "-m", "fleetwise", "emulate", "--workers", "2", "--port-base", "0",
                             "--time-scale", str(SCALE)], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        urls = re.findall(r"http://127\.0\.0\.1:\d+", line)
        assert len(urls) == 2, line
        yield urls
    finally:
        proc.terminate()
        proc.wait(10)


def chat_like_trace(n: int, rate: float, seed: int = 1) -> RequestTrace:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    isl = np.clip(rng.lognormal(6.7, 0.8, n), 10, 6000).astype(np.int64)
    osl = np.clip(rng.lognormal(4.9, 0.7, n), 2, 600).astype(np.int64)
    return RequestTrace(arrival - arrival[0], isl, osl)


def test_replay_of_emulated_workers_matches_the_simulation(emulator):
    """TPOT (the step model's decode time) agrees within 5%; TTFT within 35% at 4x compression, where the HTTP
    round trip (~1-2 ms real) is 4-8 ms of a ~25 ms TTFT."""
    trace = chat_like_trace(120, rate=6.0)
    result = replay_trace(trace, emulator, time_compress=SCALE)
    out = compare_with_simulation(result, SimulatedFleet("llama-3.1-8b", "h100", 1, "fp8", "vllm"))
    assert out["completed"] == 120 and out["simulated"]["completed"] == 120
    assert out["simulated"]["fleet"]["engines"] == 2
    gap = out["gap"]
    assert abs(gap["tpot_ms"]["p50"]) < 0.05 and abs(gap["tpot_ms"]["p95"]) < 0.05
    assert -0.05 < gap["ttft_ms"]["p50"] < 0.35
    assert set(gap) == {"ttft_ms", "tpot_ms"} and set(gap["ttft_ms"]) == {"p50", "p95", "p99"}


def test_simulation_sees_the_fleet_size(emulator):
    """The same requests on one engine instead of two queue more: the simulated TTFT rises."""
    trace = chat_like_trace(60, rate=40.0, seed=2)
    result = replay_trace(trace, emulator, time_compress=SCALE)
    fleet = SimulatedFleet("llama-3.1-8b", "h100", 1, "fp8", "vllm")
    two = simulate_replayed(result, fleet)
    one = simulate_replayed(result, SimulatedFleet("llama-3.1-8b", "h100", 1, "fp8", "vllm", engines=1))
    assert two.requests == one.requests == 60
    assert one.ttft_ms["p95"] > two.ttft_ms["p95"]


def test_relative_gaps():
    measured = {"ttft_ms": {"p50": 11.0, "p95": 30.0, "p99": math.nan}, "tpot_ms": {"p50": 5.0}}
    simulated = {"ttft_ms": {"p50": 10.0, "p95": 40.0, "p99": 50.0}, "tpot_ms": {"p50": 0.0}}
    gap = relative_gaps(measured, simulated)
    assert gap["ttft_ms"]["p50"] == pytest.approx(0.1) and gap["ttft_ms"]["p95"] == pytest.approx(-0.25)
    assert gap["ttft_ms"]["p99"] is None and gap["tpot_ms"]["p50"] is None and gap["tpot_ms"]["p95"] is None


def test_a_worker_reclaimed_mid_stream_counts_as_connection_lost():
    """A spot notice ends while replayed streams are open: replay counts them `connection_lost`, the rest of the
    run (on the other worker) completes."""
    import threading

    from fleetwise.emulate import EmulatorConfig, WorkerThread

    n = 40
    trace = RequestTrace(np.linspace(0.0, 2.0, n), np.full(n, 200, dtype=np.int64), np.full(n, 3000, dtype=np.int64))
    with WorkerThread(EmulatorConfig(time_scale=10.0), n=2) as fleet:
        doomed = fleet.fleet.workers[0]
        timer = threading.Timer(0.5, fleet.call, args=(doomed.interrupt, 2.0, "aws"))  # reclaimed at ~0.7 s
        timer.start()
        try:
            result = replay_trace(trace, fleet.urls, time_compress=10.0, timeout_s=60)
        finally:
            timer.cancel()
    summary = result.summary()
    lost = summary["failed_by_reason"].get("connection_lost", 0)
    assert lost >= 1
    assert summary["completed"] + summary["failed"] == n
    assert summary["by_url"][1]["failed"] == 0 and summary["by_url"][1]["completed"] >= 1
