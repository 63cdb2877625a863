"""Measured vs simulated: run ``fleetwise simulate`` on exactly the requests a replay sent, on the same fleet,
and put the two side by side with the relative gap of each percentile.

The simulated fleet is ``engines`` single-engine instances of the replica (one per replayed URL by default),
warm from the start (no cold start, no spot losses), behind the simulator's least-outstanding-work router -
the rule ``fleetwise replay`` spreads requests over several URLs by. Against ``fleetwise emulate`` workers the
gap measures the emulator and the HTTP path, since both run the same step model; against a real server it
measures how far fleetwise's performance model is from that fleet.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.replay.results import ReplayResult
from fleetwise.sim.core import SimConfig
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.results import SimulationResult
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import fleet_spec

GAP_METRICS = ("ttft_ms", "tpot_ms")
PERCENTILES = ("p50", "p95", "p99")


@dataclasses.dataclass(frozen=True)
class SimulatedFleet:
    """The fleet a replay ran against, as the simulator should model it."""

    model: str
    gpu: str
    gpus: int = 1
    precision: str = "fp8"
    engine: str = "vllm"
    engines: int | None = None  # default: one per replayed URL
    max_num_seqs: int | None = None


def simulate_replayed(result: ReplayResult, fleet: SimulatedFleet, *, ttft_ms: float = 1000.0,
                      tpot_ms: float = 50.0) -> SimulationResult:
    """Simulate the requests a replay sent (its arrival times and lengths, in trace time) through ``fleet``."""
    sent = np.isfinite(result.sent_s)
    if not sent.any():
        raise ConfigError("the replay sent no request: nothing to simulate")
    arrival = result.arrival_s[sent]
    requests = SimRequests(arrival - arrival[0], result.input_tokens[sent].astype(np.int64),
                           np.maximum(result.max_tokens[sent].astype(np.int64), 1),
                           np.zeros(int(sent.sum()), dtype=np.int64),
                           (PriorityClass("interactive", ttft_ms, tpot_ms),))
    engines = fleet.engines or len(result.urls)
    spec = _spec(fleet, ttft_ms, tpot_ms, float(requests.isl.mean()), float(requests.osl.mean()))
    itype = dataclasses.replace(spec.itype, engines=1, cold_start_s=0.0, hazard_per_hour=0.0)
    spec = dataclasses.replace(spec, itype=itype, replicas_per_instance=1)
    policy = StaticSchedule.fixed({"on_demand": engines}, name="replayed-fleet")
    return simulate_fleet(requests, spec, policy, SimConfig(router="least-work"))


def check_fleet(fleet: SimulatedFleet, *, ttft_ms: float = 1000.0, tpot_ms: float = 50.0) -> None:
    """Raise now what simulating ``fleet`` would (unknown names, a replica that cannot be built, no offer),
    so a replay is not spent on a comparison that cannot run."""
    if fleet.engines is not None and fleet.engines < 1:
        raise ConfigError(f"the simulated fleet needs at least one engine (got {fleet.engines})")
    _spec(fleet, ttft_ms, tpot_ms, 1000.0, 250.0)


def _spec(fleet: SimulatedFleet, ttft_ms: float, tpot_ms: float, mean_isl: float, mean_osl: float):
    return fleet_spec(fleet.model, fleet.gpu, fleet.gpus, None, fleet.precision, engine=fleet.engine,
                      max_batch=fleet.max_num_seqs, ttft_ms=ttft_ms, tpot_ms=tpot_ms, mean_isl=mean_isl,
                      mean_osl=mean_osl)


def relative_gaps(measured: dict, simulated: dict) -> dict:
    """``{"ttft_ms": {"p50": (measured - simulated) / simulated, ...}, "tpot_ms": ...}`` (None where undefined)."""
    out = {}
    for metric in GAP_METRICS:
        row = {}
        for p in PERCENTILES:
            m, s = measured.get(metric, {}).get(p), simulated.get(metric, {}).get(p)
            ok = m is not None and s is not None and math.isfinite(m) and math.isfinite(s) and s > 0
            row[p] = (m - s) / s if ok else None
        out[metric] = row
    return out


def compare_with_simulation(result: ReplayResult, fleet: SimulatedFleet, *, ttft_ms: float = 1000.0,
                            tpot_ms: float = 50.0) -> dict:
    """The replay's summary with ``simulated`` (the ``simulate --json`` keys) and ``gap`` added."""
    measured = result.summary(ttft_ms, tpot_ms)
    sim = simulate_replayed(result, fleet, ttft_ms=ttft_ms, tpot_ms=tpot_ms).to_dict()
    measured["simulated"] = {k: sim[k] for k in ("requests", "completed", "dropped", "unfinished", "ttft_ms",
                                                  "tpot_ms", "slo_attainment", "duration_s", "goodput_rps")}
    measured["simulated"]["fleet"] = dataclasses.asdict(fleet) | {"engines": fleet.engines or len(result.urls)}
    measured["gap"] = relative_gaps(measured, sim)
    return measured
