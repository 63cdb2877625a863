"""Verification by simulation in worker processes gives the same plan as in one process, and falls back to
this process where no pool can start or the pool breaks."""

from __future__ import annotations

import os

import pytest

from fleetwise.plan import search
from fleetwise.plan.search import SLO, PlanRequest, Verifier, plan
from fleetwise.plan.workload import get_workload


def _request(workers: int) -> PlanRequest:
    return PlanRequest(["llama-3.1-8b"], get_workload("chat"), SLO(1000, 50), gpus=["l4", "a10g", "l40s"],
                       verify_top=6, sim_requests=300, workers=workers)


def _figures(result) -> list[tuple]:
    return [(c.offer, c.max_batch, c.goodput_rps, c.slo_ttft_ms, c.slo_tpot_ms, c.verified)
            for c in result.candidates]


def test_processes_and_one_process_plan_alike(monkeypatch):
    started = []
    real = Verifier._start
    monkeypatch.setattr(Verifier, "_start", lambda self: started.append((self.processes, real(self))) or started[-1][1])
    one = plan(_request(1))
    assert started and all(pool is None for _, pool in started)  # one process: never a pool
    started.clear()
    two = plan(_request(2))
    assert started and all(n == 2 and pool is not None for n, pool in started)  # rounds of 2+ jobs: the pool
    assert _figures(one) == _figures(two) and sum(c.verified for c in one.candidates) >= 4


def test_without_fork_the_work_stays_here(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with Verifier(2) as verify:
        jobs = [(k,) for k in range(4)]
        monkeypatch.setattr(search, "verify_goodput", lambda *job: job[0])
        assert list(verify(jobs)) == [0, 1, 2, 3] and verify._pool is None


def _die(job):
    os._exit(3)  # a worker killed mid-job (out of memory, say)


def test_a_broken_pool_leaves_the_rest_to_this_process(monkeypatch):
    monkeypatch.setattr(search, "_verify_job", _die)
    monkeypatch.setattr(search, "verify_goodput", lambda *job: job[0] * 10)
    with Verifier(2) as verify:
        assert list(verify([(k,) for k in range(4)])) == [0, 10, 20, 30]
        assert list(verify([(5,), (6,)])) == [50, 60] and verify._pool is None  # no new pool after a break


@pytest.mark.parametrize("workers", [1, 2])
def test_a_single_job_runs_here(monkeypatch, workers):
    monkeypatch.setattr(search, "verify_goodput", lambda *job: job[0])
    with Verifier(workers) as verify:
        assert list(verify([(7,)])) == [7] and verify._pool is None
