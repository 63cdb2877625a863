"""Fixtures of the fleet-simulator tests: one small fleet resolved once per session.

Llama-3.1-8B FP8 on one H100 SXM per engine (TP1), priced from the catalog's p5.48xlarge offer (it has
on-demand, spot and reserved prices). Tests change the engines per instance, the cold start and the spot
hazard with ``make_spec``; rates are set relative to ``capacity_rps`` (the engine's offline request
throughput from fleetwise.perf) so they stay meaningful when the shipped engine profile is recalibrated.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetwise.perf.predict import predict
from fleetwise.sim.setup import FleetSpec, fleet_spec

from .helpers import with_itype

OFFER = "aws/us-east-1/p5.48xlarge"


@pytest.fixture(scope="session")
def base_spec() -> FleetSpec:
    return fleet_spec("llama-3.1-8b", "h100-sxm", 1, precision="fp8", offer=OFFER)


@pytest.fixture(scope="session")
def make_spec(base_spec: FleetSpec) -> Callable[..., FleetSpec]:
    """make_spec(engines=1, cold_start_s=0, hazard_per_hour=0) -> a FleetSpec with that instance type."""

    def make(engines: int = 1, cold_start_s: float = 0.0, hazard_per_hour: float = 0.0) -> FleetSpec:
        return with_itype(base_spec, engines=engines, cold_start_s=cold_start_s, hazard_per_hour=hazard_per_hour)

    return make


@pytest.fixture(scope="session")
def capacity_rps(base_spec: FleetSpec) -> float:
    """Saturated request throughput of one engine at 1000 input / 250 output tokens."""
    return predict(base_spec.replica, 1000, 250, "offline").request_throughput
