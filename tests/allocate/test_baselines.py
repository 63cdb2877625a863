"""The baseline strategies, sized by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.baselines import (
    all_on_demand_peak,
    all_reserved_peak,
    percentile_heuristic,
    reactive_on_demand,
    score_baselines,
)
from fleetwise.allocate.evaluate import Evaluation, evaluate
from fleetwise.errors import InfeasibleError, NotApplicableError

from .helpers import offer

# A is cheapest per req/s for spot (0.03) and reservations (0.05); B for on-demand (0.08 vs 0.10).
A = offer("A", 10, od=1.0, spot=0.3, r1=0.5)
B = offer("B", 30, od=2.4, spot=1.2, r1=1.8)
OFFERS = [A, B]


@pytest.mark.parametrize(("peak", "count"), [(95.0, 4), (90.0, 3), (90.5, 4), (0.0, 0)])
def test_all_on_demand_peak_uses_cheapest_on_demand(peak, count):
    s = all_on_demand_peak(OFFERS, peak, 5)
    assert s.name == "all on-demand (peak)"
    assert s.on_demand.tolist() == [[0] * 5, [count] * 5]
    assert s.spot.sum() == 0 and s.reserved == {}


def test_all_reserved_peak_uses_cheapest_reservation():
    s = all_reserved_peak(OFFERS, 95.0, 5)
    assert s.name == "all reserved 1y (peak)"
    assert s.reserved == {("A", "reserved_1y"): 10}
    assert s.on_demand.sum() == 0 and s.spot.sum() == 0
    assert s.reserved_counts().tolist() == [10, 0]
    # only 3-year terms on offer: the baseline uses them
    three = [offer("C", 20, od=2.0, r3=0.9)]
    s3 = all_reserved_peak(three, 50.0, 2)
    assert s3.reserved == {("C", "reserved_3y"): 3}
    assert "3y" in s3.name


def test_no_on_demand_price_is_not_applicable():
    spot_only = [offer("s", 10, od=None, spot=0.3)]
    for build in (lambda: all_on_demand_peak(spot_only, 10.0, 2),
                  lambda: reactive_on_demand(spot_only, np.array([1.0, 2.0]), 1),
                  lambda: percentile_heuristic(spot_only, HISTORY, 2)):
        with pytest.raises(NotApplicableError, match="no offer has an on-demand price") as exc:
            build()
        assert isinstance(exc.value, InfeasibleError)  # callers catching the parent still see it
        assert exc.value.reason == "no offer has an on-demand price"


# GCP / Azure / Lambda offers: no reserved price at all.
NO_RESERVED = [offer("g", 10, od=1.0, spot=0.3), offer("l", 30, od=2.4)]


def test_all_reserved_peak_without_reserved_prices_is_not_applicable():
    with pytest.raises(NotApplicableError) as exc:
        all_reserved_peak(NO_RESERVED, 95.0, 5)
    assert exc.value.strategy == "all reserved (peak)"
    assert exc.value.reason == "no offer has a reserved price"
    assert str(exc.value) == "all reserved (peak): no offer has a reserved price"


def test_score_baselines_marks_what_the_offers_cannot_express():
    demand = np.array([40.0, 60.0, 95.0])
    rows, built = score_baselines([lambda: all_on_demand_peak(NO_RESERVED, 95.0, 3),
                                   lambda: all_reserved_peak(NO_RESERVED, 95.0, 3),
                                   lambda: percentile_heuristic(NO_RESERVED, HISTORY, 3)],
                                  lambda s: evaluate(s, demand, 1.0, cold_start_s=0.0))
    assert [r.name for r in rows] == ["all on-demand (peak)", "all reserved (peak)",
                                      "percentile (P25 res / P75 spot / P99 OD)"]
    assert [r.applicable for r in rows] == [True, False, True]
    na = rows[1]
    assert na.reason == "no offer has a reserved price" and np.isnan(na.cost_usd)
    assert na.to_dict() == {"name": "all reserved (peak)", "applicable": False,
                            "reason": "no offer has a reserved price", "cost_usd": None, "cost_by_tier": None,
                            "unmet_demand_fraction": None, "spot_lost_instance_h": None}
    assert [s.name for s in built] == [rows[0].name, rows[2].name]  # no schedule for the n/a row
    assert rows[0].cost_usd == pytest.approx(4 * 2.4 * 3)  # ceil(95 / 30) x $2.40 x 3 h
    assert rows[0].to_dict()["applicable"] is True and rows[0].to_dict()["reason"] is None


def test_score_baselines_does_not_swallow_other_errors():
    def broken():
        raise InfeasibleError("something else")

    with pytest.raises(InfeasibleError, match="something else"):
        score_baselines([broken], lambda s: Evaluation.not_applicable(s.name, "unused"))


@pytest.mark.parametrize("lead", [1, 2])
def test_reactive_on_demand_lags_by_lead_plus_one(lead):
    demand = np.array([10.0, 50.0, 100.0, 20.0, 70.0, 0.0, 45.0, 30.0])
    history = np.array([30.0, 40.0, 35.0])
    s = reactive_on_demand(OFFERS, demand, lead, history_rps=history)
    assert s.name == "reactive on-demand"
    assert s.on_demand[0].sum() == 0 and s.spot.sum() == 0 and s.reserved == {}
    seen = np.concatenate([history, demand])
    expected = [int(np.ceil(seen[len(history) + t - lead - 1] / 0.8 / 30)) for t in range(len(demand))]
    assert s.on_demand[1].tolist() == expected
    # explicitly, for the periods after the lag: sized on demand[t - lead - 1] at 80% utilization
    for t in range(lead + 1, len(demand)):
        assert s.on_demand[1, t] == np.ceil(demand[t - lead - 1] / 24 - 1e-9)
    if lead == 1:
        assert expected == [2, 2, 1, 3, 5, 1, 3, 0]


def test_reactive_on_demand_without_history_starts_from_first_value():
    demand = np.array([48.0, 100.0, 10.0, 10.0])
    s = reactive_on_demand(OFFERS, demand, 1, target_utilization=1.0)
    # periods 0-1 see demand[0] (48 -> 2 x 30), period 2 sees demand[0], period 3 demand[1]
    assert s.on_demand[1].tolist() == [2, 2, 2, 4]


HISTORY = np.arange(101.0)  # P25 = 25, P75 = 75, P99 = 99


def test_percentiles_of_the_history():
    assert np.percentile(HISTORY, [25, 75, 99]).tolist() == [25, 75, 99]


@pytest.mark.parametrize(("hazard", "spot", "od"), [
    (0.0, 5, 2),  # spot: ceil((75 - 30) / 10) = 5 -> 50 req/s; on-demand: ceil((99 - 30 - 50) / 10) = 2
    (2.0, 5, 3),  # availability 1/1.1: ceil(45 / 9.09) = 5 -> 45.45 req/s; ceil(23.55 / 10) = 3
    (10.0, 7, 3),  # availability 1/1.5: ceil(45 / 6.67) = 7 -> 46.7; ceil(22.3 / 10) = 3
])
def test_percentile_heuristic_by_hand(hazard, spot, od):
    o = offer("a", 10, od=1.0, spot=0.3, r1=0.5, hazard=hazard)
    s = percentile_heuristic([o], HISTORY, 4, cold_start_s=300.0)
    assert s.reserved == {("a", "reserved_1y"): 3}  # ceil(25 / 10)
    assert s.spot.tolist() == [[spot] * 4]
    assert s.on_demand.tolist() == [[od] * 4]
    assert s.name.startswith("percentile")


def test_percentile_heuristic_picks_cheapest_offer_per_tier():
    s = percentile_heuristic(OFFERS, HISTORY, 3)
    assert s.reserved == {("A", "reserved_1y"): 3}
    assert s.spot.tolist() == [[5] * 3, [0] * 3]  # A is the cheapest spot
    assert s.on_demand.tolist() == [[0] * 3, [1] * 3]  # B: ceil(19 / 30) = 1


def test_percentile_heuristic_without_spot_puts_the_rest_on_demand():
    o = offer("a", 10, od=1.0, r1=0.5)
    s = percentile_heuristic([o], HISTORY, 2)
    assert s.spot.sum() == 0
    assert s.on_demand.tolist() == [[7, 7]]  # ceil((99 - 30) / 10)


def test_percentile_heuristic_low_history_buys_no_reservation():
    o = offer("a", 10, od=1.0, spot=0.3, r1=0.5)
    s = percentile_heuristic([o], np.array([0.0, 0.0, 0.0, 0.0, 15.0]), 2)
    assert s.reserved == {}
    assert s.spot.tolist() == [[0, 0]]
    assert s.on_demand.tolist() == [[2, 2]]  # P99 = 14.4 -> 2 instances


def test_percentile_heuristic_without_reserved_prices_runs_its_base_on_demand():
    # P25 = 25 -> 3 on-demand instances as the base; spot ceil((75 - 30) / 10) = 5; top-up ceil(19 / 10) = 2
    o = offer("g", 10, od=1.0, spot=0.3)
    s = percentile_heuristic([o], HISTORY, 4)
    assert s.reserved == {}
    assert s.spot.tolist() == [[5] * 4]
    assert s.on_demand.tolist() == [[3 + 2] * 4]


def test_percentile_heuristic_on_demand_only_offers():
    s = percentile_heuristic([offer("l", 10, od=1.0)], HISTORY, 2)  # Lambda: on-demand only
    assert s.reserved == {} and s.spot.sum() == 0
    assert s.on_demand.tolist() == [[3 + 7] * 2]  # base ceil(25 / 10) + ceil((99 - 30) / 10)
