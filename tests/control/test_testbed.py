"""The testbed end to end on a short slice of a real trace: the controller (SIGKILLed and restarted), its
emulated workers, spot notices, the replay, and the simulator's prediction of the same run."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.control.testbed import TestbedConfig, run_testbed
from fleetwise.errors import ConfigError
from fleetwise.traffic.records import RequestTrace
from tests.shared_data import shared

AZURE = shared("traces", "azure_llm_conv_2023.csv")


def _trace(seconds: float = 180.0) -> RequestTrace:
    if AZURE.is_file():
        from fleetwise.cli.traffic import load_input

        tr = load_input(AZURE)
        return tr.window(tr.start_s, tr.start_s + seconds)
    rng = np.random.default_rng(0)  # no shared data: a Poisson trace of the same rate
    t = np.cumsum(rng.exponential(1 / 5.0, int(5 * seconds)))
    return RequestTrace(t, rng.integers(100, 2000, len(t)), rng.integers(20, 400, len(t)))


def _why(out: dict, tmp_path) -> str:
    """What a failed run looked like: the losses, the chaos, the fleet over time, the controller's log tail."""
    m = out["measured"]
    log = tmp_path / "control.log"
    tail = log.read_text(errors="replace").splitlines()[-25:] if log.is_file() else []
    first = f"failed_by_reason={m['failed_by_reason']} first_errors={m['first_error_by_reason']}"
    return "\n".join([first, f"rerouted={m['rerouted']}", f"chaos={out['chaos']}",
                      f"instances_by_tier={m['instances_by_tier']}", "control.log:", *tail])


def test_testbed_survives_controller_kills_with_spot_notices_armed(tmp_path):
    """The controller SIGKILLed every ~2 wall seconds (spot notices armed: the 3-minute slice keeps its fleet
    on demand, so the notice path is covered by benchmarks/testbed_chaos.py's hour). Workers keep serving
    while it is down; a worker the controller drained is not removed before the replay has seen it leave."""
    config = TestbedConfig(time_compress=20.0, preemption_rate_per_hour=60.0, kill_controller_every_s=40.0,
                           initial_workers=2, fast_interval_s=5.0, interval_s=60.0, keep_dir=str(tmp_path))
    trace = _trace()
    out = run_testbed(trace, config)
    m, s, chaos = out["measured"], out["simulated"], out["chaos"]
    why = _why(out, tmp_path)
    assert m["requests"] == s["requests"] == len(trace)
    assert chaos["controller_restarts"] >= 2, why
    assert chaos["duplicate_launches"] == 0 and chaos["orphaned_workers"] == 0, why
    assert chaos["workers_left_after_stop"] == 0, why
    assert m["completed"] + m["failed"] == len(trace)
    assert m["completed"] >= 0.95 * len(trace), why
    assert set(chaos["lost_by_reason"]) <= {"connection_lost", "incomplete", "http_503"}, why
    assert m["cost_usd"] > 0 and s["cost_usd"] > 0
    assert set(out["gap"]) >= {"ttft_ms", "tpot_ms", "cost_usd", "slo_attainment"}
    assert out["config"]["policy"] == "hybrid"


def test_bad_testbed_options_are_clear_errors():
    with pytest.raises(ConfigError, match="compression"):
        TestbedConfig(time_compress=0)
    with pytest.raises(ConfigError, match="preemption"):
        TestbedConfig(preemption_rate_per_hour=-1)


def test_testbed_with_a_real_prometheus_between_the_workers_and_the_controller(tmp_path):
    from fleetwise.control.store import SqlStore
    from tests.services import require

    require("prometheus", "Debian/Ubuntu: apt-get install prometheus")
    out = run_testbed(_trace(180.0), TestbedConfig(time_compress=20.0, initial_workers=1, fast_interval_s=5.0,
                                                   interval_s=30.0, metrics="prometheus", keep_dir=str(tmp_path)))
    m = out["measured"]
    assert m["completed"] == m["requests"] and out["chaos"]["orphaned_workers"] == 0
    decisions = SqlStore(f"sqlite:///{tmp_path}/control.db").decisions(1000)
    seen = [d.inputs["observation"]["arrivals_rps"] for d in decisions if d.reason != "hold_stale"]
    assert any(x is not None and x > 0 for x in seen)  # decided on demand that Prometheus scraped
