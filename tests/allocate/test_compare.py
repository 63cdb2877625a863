"""Train on history, operate on what followed: fleetwise against the baselines and the hindsight optimum."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.compare import compare
from fleetwise.allocate.evaluate import evaluate, spot_uniforms
from fleetwise.errors import ConfigError
from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.records import RateSeries

from .helpers import offer

OFFERS = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, r3=1.8, hazard=0.05),
          offer("small", 6, od=1.5, spot=0.5, r1=1.0, hazard=0.1)]
BASELINES = ["all on-demand (peak)", "all reserved 1y (peak)", "reactive on-demand",
             "percentile (P25 res / P75 spot / P99 OD)"]


@pytest.fixture(scope="module")
def series():
    return synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1)


@pytest.fixture(scope="module")
def cmp(series):
    return compare(series, OFFERS, train_days=3, eval_days=1)


def test_strategies_present(cmp, series):
    assert cmp.period_h == 0.5
    assert len(cmp.demand_rps) == 48
    np.testing.assert_allclose(cmp.demand_rps, series.values[144:192])
    assert cmp.fleetwise.name == "fleetwise (forecast + MILP + rolling)"
    assert cmp.hindsight.name == "hindsight optimum"
    assert [b.name for b in cmp.baselines] == BASELINES
    assert set(cmp.schedules) == {cmp.fleetwise.name, cmp.hindsight.name, *BASELINES}
    for s in cmp.schedules.values():
        assert s.spot.shape == s.on_demand.shape == (2, 48)


def test_hindsight_is_the_cheapest(cmp):
    h = cmp.hindsight.cost_usd
    assert h > 0
    for e in (cmp.fleetwise, *cmp.baselines):
        assert h <= e.cost_usd * 1.02, e.name
    assert cmp.ratio_to_hindsight == pytest.approx(cmp.fleetwise.cost_usd / h)
    assert cmp.ratio_to_hindsight >= 0.98
    plan = cmp.hindsight_plan
    assert plan.lower_bound_usd <= plan.total_usd + 1e-9 and plan.gap >= 0
    assert np.all(plan.capacity_rps() >= cmp.demand_rps - 1e-6)  # planned on the actual demand


def test_fleetwise_serves_the_demand(cmp):
    assert cmp.fleetwise.unmet_demand_fraction < 0.02
    assert cmp.fleetwise.cost_usd < next(b.cost_usd for b in cmp.baselines if b.name == "all on-demand (peak)")
    median, worst = cmp.step_ms
    assert 0 < median <= worst < 2000


def test_reservations_come_from_the_plan(cmp):
    fw = cmp.schedules[cmp.fleetwise.name]
    assert fw.reserved == {k: v for k, v in cmp.reservation_plan.reserved.items() if v > 0}
    ids = {o.id for o in OFFERS}
    assert all(oid in ids and term in ("reserved_1y", "reserved_3y") for oid, term in fw.reserved)


def test_rolling_schedule_is_damped(cmp):
    fw = cmp.schedules[cmp.fleetwise.name]
    plan = cmp.reservation_plan
    for arr, first in ((fw.spot, plan.spot[:, 0]), (fw.on_demand, plan.on_demand[:, 0])):
        steps = np.diff(np.concatenate([first[:, None], arr], axis=1), axis=1)
        assert steps.max() <= 2 and steps.min() >= -1
        assert np.array_equal(arr[:, 0], first)  # the first period runs the plan's fleet (lead time)


def test_everyone_is_scored_with_the_same_random_numbers(cmp):
    u = spot_uniforms(len(OFFERS), 48, 0)
    for e in (cmp.fleetwise, cmp.hindsight, *cmp.baselines):
        again = evaluate(cmp.schedules[e.name], cmp.demand_rps, cmp.period_h, cold_start_s=300.0, uniforms=u)
        assert again.cost_usd == pytest.approx(e.cost_usd)
        assert again.unmet_demand_fraction == pytest.approx(e.unmet_demand_fraction)


@pytest.mark.parametrize(("train", "evaluate_days"), [(3, 2), (0.01, 1), (3, 0)])
def test_windows_that_do_not_fit(series, train, evaluate_days):
    with pytest.raises(ConfigError, match="do not fit"):
        compare(series, OFFERS, train_days=train, eval_days=evaluate_days)


def test_oracle_forecast_closes_the_forecast_gap(series, cmp):
    # Given the actual future, the rolling layer provisions no quantile buffer: the same reservations, less
    # than the forecast-driven cost, and the demand served but for spot losses (no buffer absorbs them).
    oracle = compare(series, OFFERS, train_days=3, eval_days=1, oracle_forecast=True)
    assert oracle.reservation_plan.reserved == cmp.reservation_plan.reserved
    assert oracle.fleetwise.cost_usd < cmp.fleetwise.cost_usd
    assert oracle.fleetwise.unmet_demand_fraction < 0.005
    fw = oracle.schedules[oracle.fleetwise.name]
    assert fw.spot.shape == (2, 48)


# ------------------------------------------------------------------- offers without a reserved tier (GCP, Lambda)

GCP_LIKE = [offer("big", 20, od=4.0, spot=1.6, hazard=0.05), offer("small", 6, od=1.5, spot=0.5, hazard=0.1)]
LAMBDA_LIKE = [offer("big", 20, od=4.0), offer("small", 6, od=1.5)]
RESERVED_NA = "no offer has a reserved price"


@pytest.fixture(scope="module")
def short_series():
    return synthetic_series(SyntheticSpec(days=3, period_s=3600, base_rps=50), seed=1)


@pytest.mark.parametrize("offers", [GCP_LIKE, LAMBDA_LIKE], ids=["spot+on-demand", "on-demand-only"])
def test_offers_without_reserved_price_plan_spot_and_on_demand(short_series, offers):
    cmp = compare(short_series, offers, train_days=2, eval_days=1)
    assert cmp.reservation_plan.reserved == {} and cmp.hindsight_plan.reserved == {}
    fw = cmp.schedules[cmp.fleetwise.name]
    assert fw.reserved == {}
    assert (fw.spot.sum() > 0) == (offers is GCP_LIKE)  # spot is used where it is priced
    assert fw.on_demand.sum() > 0
    assert cmp.fleetwise.unmet_demand_fraction < 0.05
    assert cmp.hindsight.cost_usd > 0
    names = [b.name for b in cmp.baselines]
    assert names == ["all on-demand (peak)", "all reserved (peak)", "reactive on-demand",
                     "percentile (P25 res / P75 spot / P99 OD)"]
    na = cmp.baselines[1]
    assert not na.applicable and na.reason == RESERVED_NA and np.isnan(na.cost_usd)
    assert "all reserved (peak)" not in cmp.schedules
    for b in (cmp.baselines[0], *cmp.baselines[2:]):
        assert b.applicable and b.reason is None
        assert b.cost_usd >= cmp.hindsight.cost_usd / 1.02, b.name  # no baseline beats hindsight


def test_mixed_offers_reserve_only_where_a_price_exists(short_series):
    # The no --cloud case: an AWS-like offer with reservations competes with ones without.
    offers = [*GCP_LIKE, offer("aws", 10, od=2.2, spot=0.9, r1=1.0, hazard=0.05)]
    cmp = compare(short_series, offers, train_days=2, eval_days=1)
    assert {oid for oid, _ in cmp.hindsight_plan.reserved} <= {"aws"}
    assert all(b.applicable for b in cmp.baselines)
    assert cmp.baselines[1].name == "all reserved 1y (peak)"


@pytest.mark.parametrize("offers", [GCP_LIKE, OFFERS], ids=["no-reserved", "reserved"])
def test_all_zero_demand_costs_nothing(offers):
    zeros = RateSeries(0.0, 3600.0, np.zeros(72))
    cmp = compare(zeros, offers, train_days=2, eval_days=1)
    assert cmp.hindsight.cost_usd == 0.0 and cmp.fleetwise.cost_usd == 0.0
    assert np.isnan(cmp.ratio_to_hindsight)
    for b in cmp.baselines:
        if b.applicable:
            assert b.cost_usd == 0.0 and b.unmet_demand_fraction == 0.0, b.name
    assert [b.applicable for b in cmp.baselines] == [True, offers is OFFERS, True, True]


def test_all_missing_window_is_a_one_line_config_error():
    gaps = RateSeries(0.0, 3600.0, np.full(72, np.nan))
    with pytest.raises(ConfigError, match="no known demand values"):
        compare(gaps, GCP_LIKE, train_days=2, eval_days=1)


def test_a_spike_beyond_the_caps_is_unmet_not_an_error():
    # Demand peaks at 45 req/s in the operated day; the caps allow ~40 (3 on-demand + 1 spot of 10 req/s).
    # Hindsight covers what the caps allow, and the spike shows as unmet demand for every strategy.
    values = np.full(72, 20.0)
    values[60] = 45.0
    capped = [offer("a", 10, od=1.0, spot=0.4, hazard=0.05, caps={"on_demand": 3, "spot": 1})]
    cmp = compare(RateSeries(0.0, 3600.0, values), capped, train_days=2, eval_days=1)
    assert cmp.hindsight.cost_usd > 0
    assert np.all(cmp.hindsight_plan.capacity_rps() <= 40.0 + 1e-9)
    spike_share = (45.0 - 40.0) / values[48:].sum()  # at least this much no allocation could serve
    assert cmp.hindsight.unmet_demand_fraction >= spike_share - 1e-12
    assert cmp.fleetwise.unmet_demand_fraction >= spike_share - 1e-12
