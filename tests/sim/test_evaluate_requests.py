"""fleetwise.sim.evaluate: operated schedules replayed request by request (``optimize --evaluate requests``).

One L40S offer (llama-3.1-8b FP8, one replica per g6e.xlarge) on two days of hourly demand at 60 req/s; the
schedules differ only in how many instances they run, so what the simulator measures can be held against them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetwise.allocate.compare import Comparison
from fleetwise.allocate.evaluate import Evaluation, Schedule, evaluate
from fleetwise.allocate.offers import CapacityOffer
from fleetwise.errors import ConfigError
from fleetwise.plan.workload import BUILTIN
from fleetwise.sim.evaluate import OfferSetup, evaluate_requests, offer_setups
from fleetwise.sim.sampling import Sampling
from fleetwise.sim.setup import fleet_spec

OFFER, OTHER = "aws/us-west-2/g6e.xlarge", "aws/us-east-1/g6e.xlarge"
SETUP = OfferSetup("llama-3.1-8b", "l40s", 1, 1, "fp8", "trtllm", 256)
SLO = (1000.0, 50.0)
WORKLOAD = BUILTIN["chat"].with_overrides(isl=914, osl=155)
RATE = 60.0
PERIODS = 48  # two days of hours
SMALL = Sampling(requests_per_day=3000, windows_per_day=2, seed=3)


@pytest.fixture(scope="module")
def capacity() -> float:
    """Req/s one instance serves at the SLO, as the perf model gives it for these lengths."""
    s = SETUP
    spec = fleet_spec(s.model, s.gpu, s.gpus, s.tp, s.precision, engine=s.engine, offer=OFFER, mean_isl=914,
                      mean_osl=155, max_batch=s.max_batch)
    return spec.capacity_rps_per_instance


def _offer(oid: str, cap: float) -> CapacityOffer:
    return CapacityOffer(oid, cap, {"on_demand": 1.86, "spot": 0.78}, 0.0)


def _schedule(name: str, offers: list[CapacityOffer], on_demand: list[float]) -> Schedule:
    od = np.repeat(np.array(on_demand, dtype=float)[:, None], PERIODS, axis=1)
    return Schedule(name, offers, {}, np.zeros_like(od), od)


def _comparison(schedules: list[Schedule], demand: np.ndarray, na: tuple[str, str] | None = None) -> Comparison:
    evs = [evaluate(s, demand, 1.0, cold_start_s=0.0) for s in schedules]
    baselines = evs[1:-1] + ([Evaluation.not_applicable(*na)] if na else [])
    return Comparison(1.0, demand, None, evs[0], evs[-1], None, baselines, {s.name: s for s in schedules})


def _run(cmp: Comparison, setups: dict | None = None, sampling: Sampling = SMALL):
    return evaluate_requests(cmp, setups or {OFFER: SETUP, OTHER: SETUP}, WORKLOAD, SLO, cold_start_s=0.0,
                             sampling=sampling)


@pytest.fixture(scope="module")
def ample_and_short(capacity):
    """An ample fleet (load ~0.6), a short one (load ~1.5) and one with nothing on, on the same demand."""
    offers = [_offer(OFFER, capacity)]
    ample = math.ceil(RATE / (0.6 * capacity))
    short = max(1, math.floor(RATE / (1.5 * capacity)))
    schedules = [_schedule("ample", offers, [ample]), _schedule("short", offers, [short]),
                 _schedule("none", offers, [0])]
    demand = np.full(PERIODS, RATE)
    return _run(_comparison(schedules, demand, ("all reserved (peak)", "no offer has a reserved price")))


def test_short_fleet_misses_the_slo_an_ample_one_meets(ample_and_short):
    by = {s.name: s for s in ample_and_short.strategies}
    ample, short = by["ample"], by["short"]
    assert ample.slo_attainment > 0.95
    assert short.slo_attainment < 0.5
    assert 0 <= ample.slo_attainment_se < 0.05 and short.slo_attainment_se >= 0  # two windows a day: an error bar
    assert short.slo_attainment + 3 * short.slo_attainment_se < ample.slo_attainment
    assert ample.ttft_p95_ms <= SLO[0] < short.ttft_p95_ms
    assert short.unmet_demand_fraction > 0.2 and ample.unmet_demand_fraction == 0.0  # fluid agrees
    # What users care about: requests within SLO per dollar is higher for the fleet that serves them.
    assert ample.within_slo_per_usd > short.within_slo_per_usd
    assert ample.within_slo_per_usd == pytest.approx(ample.requests_within_slo / ample.cost_usd)
    assert ample.requests_within_slo == pytest.approx(ample.slo_attainment * RATE * 3600 * PERIODS)


def test_per_day_rows_are_bounded_by_the_budget_and_sit_next_to_fluid_unmet(ample_and_short):
    for s in (s for s in ample_and_short.strategies if s.applicable):
        assert [d.day for d in s.days] == [0, 1]
        for d in s.days:
            assert 0 < d.requests_counted <= d.requests_simulated <= SMALL.requests_per_day
            assert d.demand_requests == pytest.approx(RATE * 3600 * 24)
        assert s.requests_simulated == sum(d.requests_simulated for d in s.days)
    by = {s.name: s for s in ample_and_short.strategies}
    assert all(d.unmet_demand_fraction > 0.2 and d.load > 1.2 for d in by["short"].days)
    assert all(d.unmet_demand_fraction == 0 and 0.5 < d.load <= 0.6 for d in by["ample"].days)
    assert all(d.load == math.inf for d in by["none"].days)


def test_no_instances_serves_nothing_and_inapplicable_strategies_keep_their_reason(ample_and_short):
    by = {s.name: s for s in ample_and_short.strategies}
    none = by["none"]
    assert none.slo_attainment == 0.0 and none.requests_within_slo == 0.0
    assert math.isnan(none.ttft_p95_ms)  # no request completed
    na = by["all reserved (peak)"]
    assert not na.applicable and na.reason == "no offer has a reserved price"
    row = na.to_dict()
    assert row["slo_attainment"] is None and row["within_slo_per_usd"] is None and row["days"] == []
    out = ample_and_short.to_dict()
    assert [s["name"] for s in out["strategies"]] == ["ample", "short", "all reserved (peak)", "none"]
    assert out["requests_per_day"] == SMALL.requests_per_day and "Poisson" in out["arrivals"]
    assert "lognormal" in out["lengths"] and "914" in out["lengths"]


def test_same_seed_same_requests_for_every_strategy(capacity):
    offers = [_offer(OFFER, capacity)]
    n = math.ceil(RATE / (0.6 * capacity))
    demand = np.full(PERIODS, RATE)
    a = _run(_comparison([_schedule("x", offers, [n]), _schedule("y", offers, [n])], demand))
    b = _run(_comparison([_schedule("x", offers, [n]), _schedule("y", offers, [n])], demand))
    assert a.strategies[0].to_dict() == a.strategies[1].to_dict() | {"name": "x"}  # common random numbers
    assert a.strategies[0].to_dict() == b.strategies[0].to_dict()


def test_requests_are_routed_by_capacity_share_across_offers(capacity):
    """Two offers holding the ample fleet between them serve as well as one holding it; a short fleet split
    the same way stays short."""
    offers = [_offer(OFFER, capacity), _offer(OTHER, capacity)]
    ample = math.ceil(RATE / (0.6 * capacity))
    split = [_schedule("split", offers, [ample - ample // 2, ample // 2]),
             _schedule("split short", offers, [1, 1]),
             _schedule("one offer idle", offers, [0, ample])]
    res = {s.name: s for s in _run(_comparison(split, np.full(PERIODS, RATE))).strategies}
    assert res["split"].slo_attainment > 0.95
    assert res["one offer idle"].slo_attainment > 0.95  # nothing is routed to an offer with no instance
    if 2 * capacity < RATE / 1.3:
        assert res["split short"].slo_attainment < 0.5


def test_demand_free_day_has_no_attainment(capacity):
    offers = [_offer(OFFER, capacity)]
    demand = np.r_[np.zeros(24), np.full(24, RATE)]
    res = _run(_comparison([_schedule("x", offers, [math.ceil(RATE / (0.6 * capacity))])], demand)).strategies[0]
    assert math.isnan(res.days[0].slo_attainment) and res.days[0].requests_simulated == 0
    assert res.days[1].slo_attainment > 0.95
    assert res.slo_attainment == pytest.approx(res.days[1].slo_attainment)


def test_sampling_rejects_bad_budgets():
    with pytest.raises(ConfigError):
        Sampling(requests_per_day=10, windows_per_day=11)
    with pytest.raises(ConfigError):
        Sampling(windows_per_day=0)
    with pytest.raises(ConfigError):
        Sampling(warmup_s=math.nan)
    assert "4 windows per day" in Sampling().describe()


def test_offer_setups_take_the_candidate_with_the_most_capacity_per_instance():
    from types import SimpleNamespace

    def cand(tp, goodput, batch):
        return SimpleNamespace(offer=OFFER, model="llama-3.1-8b", gpu="l40s", num_gpus=tp, tp=tp,
                               precision="fp8", goodput_rps=goodput, max_batch=batch)

    offers = [_offer(OFFER, 16.0)]
    got = offer_setups([cand(1, 10.0, 64), cand(1, 16.0, 256), cand(1, 12.0, 128)], offers, "vllm")
    assert got[OFFER] == OfferSetup("llama-3.1-8b", "l40s", 1, 1, "fp8", "vllm", 256)
    with pytest.raises(ConfigError, match=OTHER):
        offer_setups([cand(1, 10.0, 64)], [_offer(OTHER, 16.0)], "trtllm")


def test_an_offer_credited_above_what_it_serves_is_flagged_and_misses_the_slo(capacity, ample_and_short):
    """Sized on twice the capacity the perf model gives, a fleet the fluid model calls ample is overloaded."""
    offers = [_offer(OFFER, 2 * capacity)]
    n = math.ceil(RATE / (0.8 * 2 * capacity))  # 80% of the credited capacity...
    assert RATE / (n * capacity) > 1.1  # ...is more than the instances serve
    res = _run(_comparison([_schedule("overcredited", offers, [n])], np.full(PERIODS, RATE)))
    s = res.strategies[0]
    assert s.unmet_demand_fraction == 0.0 and s.slo_attainment < 0.5
    assert [oid for oid, _, _ in res.overcredited()] == [OFFER]
    assert res.to_dict()["offer_capacity_rps"][0]["credited"] == pytest.approx(2 * capacity)
    assert ample_and_short.overcredited() == []


def test_the_html_report_shows_each_strategys_requests_within_slo(ample_and_short):
    from fleetwise.report.allocation import _requests_sections

    [(heading, inner)] = _requests_sections(ample_and_short)
    assert heading == "Request by request (simulated)"
    by = {s.name: s for s in ample_and_short.strategies}
    for name in ("ample", "short", "none"):
        assert f"<td>{name}</td>" in inner
    assert f"{by['ample'].slo_attainment:.1%}" in inner and "within SLO per $" in inner
    assert "all reserved (peak)" not in inner  # not applicable: no figures to show
    assert '<img alt="figure" src="data:image/png;base64,' in inner  # attainment by day
