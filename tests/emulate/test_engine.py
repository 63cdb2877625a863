"""The emulated engine schedules exactly as the fleet simulator's engine: same step model, same batching.

The engine is driven on a virtual clock (its plan / apply steps called in time order, arrivals submitted at
their times), so the comparison with the simulator is exact and takes no real time.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from fleetwise.emulate.engine import FINISHED, EmulatedEngine, EmuRequest, EngineLimits, run_virtual
from fleetwise.perf.replica import replica_from_names
from fleetwise.sim.core import SimConfig, Simulator
from fleetwise.sim.fleet import InstanceType
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.setup import engine_spec


@pytest.fixture(scope="module")
def spec():
    return engine_spec(replica_from_names("llama-3.1-8b", "h100", 1, None, "fp8", "vllm"))


def limits_of(spec, max_num_seqs=None, kv=None) -> EngineLimits:
    return EngineLimits(spec.step_model, max_num_seqs or spec.max_batch, spec.max_num_tokens,
                        kv or spec.kv_capacity_tokens, spec.kv_block_tokens, spec.max_context)


def drive(engine: EmulatedEngine, arrival, isl, osl) -> list[EmuRequest]:
    """Run the engine's iteration loop on a virtual clock; returns the requests in arrival order."""
    reqs = [EmuRequest(i, int(a), int(b), engine.limits.kv_block_tokens, int(b)) for i, (a, b) in
            enumerate(zip(isl, osl))]
    run_virtual(engine, arrival, reqs)
    return reqs


def simulated(spec, arrival, isl, osl, max_num_seqs=None, kv=None):
    import dataclasses

    espec = dataclasses.replace(spec, max_batch=max_num_seqs or spec.max_batch,
                                kv_capacity_tokens=kv or spec.kv_capacity_tokens)
    reqs = SimRequests(np.asarray(arrival, float), np.asarray(isl, np.int64), np.asarray(osl, np.int64),
                       np.zeros(len(arrival), np.int64), (PriorityClass("interactive", 1e9, 1e9),))
    itype = InstanceType("one", 1, {"on_demand": 1.0, "spot": 1.0, "reserved": 1.0}, 0.0, 0.0)
    sim = Simulator(reqs, itype, espec, StaticSchedule.fixed({"on_demand": 1}), SimConfig(tail_s=1e6))
    sim.run()
    return np.array(sim.first), np.array(sim.finish)


def new_engine(limits):
    async def make():
        return EmulatedEngine(limits)
    return asyncio.run(make())


@pytest.mark.parametrize("rate, max_num_seqs, kv", [(2.0, None, None), (30.0, None, None), (60.0, 16, None),
                                                     (40.0, None, 60_000)])
def test_same_schedule_as_the_simulator(spec, rate, max_num_seqs, kv):
    """First-token and finish times of every request equal the simulator's (light load, a saturated engine,
    a batch cap that queues, a KV cache that queues)."""
    rng = np.random.default_rng(7)
    n = 300
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    isl = rng.integers(1, 4000, n)
    osl = rng.integers(1, 600, n)
    eng = new_engine(limits_of(spec, max_num_seqs, kv))
    reqs = drive(eng, arrival, isl, osl)
    first, finish = simulated(spec, arrival, isl, osl, max_num_seqs, kv)
    assert all(r.state == FINISHED for r in reqs)
    np.testing.assert_allclose([r.first_s for r in reqs], first, rtol=0, atol=1e-7)
    np.testing.assert_allclose([r.finish_s for r in reqs], finish, rtol=0, atol=1e-7)
    assert eng.kv_free == eng.limits.kv_capacity_tokens and eng.ctx_sum == 0 and eng.work == 0


def test_queueing_shows_when_the_batch_cap_binds(spec):
    """With 4 slots and 12 simultaneous requests, 8 wait; the waiting ones start as slots free up."""
    eng = new_engine(limits_of(spec, max_num_seqs=4))
    reqs = drive(eng, np.zeros(12) + np.arange(12) * 1e-6, [500] * 12, [100] * 12)
    firsts = sorted(r.first_s for r in reqs)
    assert max(r.admitted_s - r.arrival_s for r in reqs[:4]) < 0.05  # at the end of the first iteration
    assert min(r.admitted_s - r.arrival_s for r in reqs[4:]) > 0.1  # a whole request's decode later
    assert firsts[4] > firsts[3] + 0.1


def test_tokens_equal_output_lengths_and_kv_is_returned(spec):
    eng = new_engine(limits_of(spec))
    reqs = drive(eng, [0.0, 0.001, 0.002], [10, 2000, 1], [1, 5, 300])
    assert [r.generated for r in reqs] == [1, 5, 300]
    assert eng.kv_free == eng.limits.kv_capacity_tokens


def test_real_time_loop_tracks_the_step_model(spec):
    """In real time (scaled 20x), a lone request's TTFT and TPOT match the step model within the loop's jitter."""
    limits = limits_of(spec)

    async def run():
        eng = EmulatedEngine(limits, time_scale=20.0)
        eng.start()
        req = EmuRequest(1, 2000, 200, limits.kv_block_tokens, 200)
        eng.submit(req)
        while not req.done:
            await req.wait()
        await eng.stop()
        return req

    req = asyncio.run(run())
    sm = spec.step_model
    ttft = sm(2000, 2000 * 2001 / 2, 0, 0, 1)
    decode = sum(sm(0, 0.0, 1, 2001 + k) for k in range(199))
    assert req.generated == 200
    assert req.first_s - req.arrival_s == pytest.approx(ttft, rel=0.25, abs=0.01)
    assert req.finish_s - req.first_s == pytest.approx(decode, rel=0.1)


def test_abort_frees_the_slot_and_cache(spec):
    limits = limits_of(spec)

    async def run():
        eng = EmulatedEngine(limits, time_scale=50.0)
        eng.start()
        reqs = [EmuRequest(i, 1000, 10_000, limits.kv_block_tokens, 10_000) for i in range(3)]
        for r in reqs:
            eng.submit(r)
        while reqs[0].generated < 5:
            await reqs[0].wait()
        for r in reqs:
            eng.abort(r)
        await asyncio.sleep(0.01)
        state = (eng.running, eng.kv_free, eng.ctx_sum, eng.work, [r.state for r in reqs])
        await eng.stop()
        return state

    running, kv_free, ctx, work, states = asyncio.run(run())
    assert running == 0 and kv_free == limits.kv_capacity_tokens and ctx == 0 and work == 0
    assert states == ["aborted"] * 3


def test_stop_ends_open_requests(spec):
    limits = limits_of(spec)

    async def run():
        eng = EmulatedEngine(limits, time_scale=1.0)
        eng.start()
        r = EmuRequest(1, 100, 1000, limits.kv_block_tokens, 1000)
        eng.submit(r)
        await asyncio.sleep(0.02)
        await eng.stop()
        return r

    r = asyncio.run(run())
    assert r.state == "aborted" and r.reason == "stopped" and not math.isnan(r.finish_s)
