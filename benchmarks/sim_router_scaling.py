"""How the fleet simulator's speed scales with fleet size (the least-work router scans every serving engine
per arrival; power-of-two choices samples two).

Fleet: llama-3.1-8b FP8, one H100 per engine, 8 engines per aws/us-east-1/p5.48xlarge instance; 2, 25 and 100
instances (16, 200, 800 engines). Load: 100,000 Poisson arrivals of 1000 input / 250 output tokens at half the
fleet's capacity estimate at the SLO (1000 ms TTFT / 50 ms TPOT). Each case runs once.

Usage: python benchmarks/sim_router_scaling.py
"""

from __future__ import annotations

import time

import numpy as np

N = 100_000


def main() -> int:
    from fleetwise.perf.predict import arrivals
    from fleetwise.sim.core import SimConfig
    from fleetwise.sim.policies import StaticSchedule
    from fleetwise.sim.requests import SimRequests, named_class
    from fleetwise.sim.run import simulate_fleet
    from fleetwise.sim.setup import fleet_spec

    spec = fleet_spec("llama-3.1-8b", "h100-sxm", 1, precision="fp8", offer="aws/us-east-1/p5.48xlarge")
    print("| engines | router | wall time | simulated req/s of wall time | completed |")
    print("|---:|---|---:|---:|---:|")
    for instances in (2, 25, 100):
        rate = 0.5 * instances * spec.capacity_rps_per_instance
        arrival = arrivals(N, rate, "poisson", 0)
        reqs = SimRequests(arrival, np.full(N, 1000), np.full(N, 250), np.zeros(N, dtype=np.int64),
                           (named_class("interactive", 1000.0, 50.0),))
        for router in ("least-work", "p2c"):
            t0 = time.perf_counter()
            res = simulate_fleet(reqs, spec, StaticSchedule.fixed({"on_demand": instances}), SimConfig(router=router))
            wall = time.perf_counter() - t0
            print(f"| {instances * spec.itype.engines} | {router} | {wall:.2f} s | {N / wall:,.0f} | {res.completed:,} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
