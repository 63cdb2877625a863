"""One call to simulate a trace through a fleet under a policy."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleetwise.sim.core import SimConfig, Simulator
from fleetwise.sim.policies import Policy
from fleetwise.sim.requests import SimRequests
from fleetwise.sim.results import SimulationResult, simulation_result
from fleetwise.sim.setup import FleetSpec


def simulate_fleet(requests: SimRequests, spec: FleetSpec, policy: Policy, config: SimConfig | None = None,
                   progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Replay ``requests`` through the fleet ``spec`` driven by ``policy`` (default options: ``SimConfig()``);
    returns the measured outcome."""
    start = time.perf_counter()
    sim = Simulator(requests, spec.itype, spec.engine, policy, SimConfig() if config is None else config,
                    spec.capacity_rps_per_instance, progress)
    log = sim.run()
    return simulation_result(sim, log, policy.name, time.perf_counter() - start)
