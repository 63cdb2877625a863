"""Planning ahead on a forecast: the allocation and the baselines priced on the same forecast."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.forecast_plan import plan_forward
from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.records import RateSeries

from .helpers import offer

NO_RESERVED = [offer("big", 20, od=4.0, spot=1.6, hazard=0.05), offer("small", 6, od=1.5, spot=0.5, hazard=0.1)]
WITH_RESERVED = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, hazard=0.05), NO_RESERVED[1]]


@pytest.fixture(scope="module")
def series():
    return synthetic_series(SyntheticSpec(days=3, period_s=3600, base_rps=50), seed=1)


def test_offers_without_reserved_price_plan_spot_and_on_demand(series):
    fp = plan_forward(series, NO_RESERVED, 24)
    a = fp.allocation
    assert a.reserved == {}
    assert a.spot.sum() > 0 and a.on_demand.sum() > 0
    assert np.all(a.capacity_rps() >= a.demand_rps - 1e-6)
    assert [b.name for b in fp.baselines] == ["all on-demand (peak)", "all reserved (peak)",
                                              "percentile (P25 res / P75 spot / P99 OD)"]
    assert [b.applicable for b in fp.baselines] == [True, False, True]
    assert fp.baselines[1].reason == "no offer has a reserved price"


def test_reserved_baseline_applies_when_one_offer_has_a_price(series):
    fp = plan_forward(series, WITH_RESERVED, 24)
    assert all(b.applicable for b in fp.baselines)
    assert fp.baselines[1].name == "all reserved 1y (peak)" and fp.baselines[1].cost_usd > 0


def test_all_zero_series_plans_nothing():
    fp = plan_forward(RateSeries(0.0, 3600.0, np.zeros(72)), NO_RESERVED, 24)
    assert fp.allocation.total_usd == 0.0
    assert fp.allocation.spot.sum() == 0 and fp.allocation.on_demand.sum() == 0
    assert all(b.cost_usd == 0.0 for b in fp.baselines if b.applicable)
    assert not fp.baselines[1].applicable
