"""The evidence behind a reservation: history length, use of the reserved layer, and the warning rule."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.compare import compare
from fleetwise.allocate.evidence import (
    MIN_DAYS_ABOVE_BREAK_EVEN,
    evidence_rule,
    reservation_evidence,
)
from fleetwise.allocate.forecast_plan import plan_forward
from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.records import RateSeries

from .helpers import offer

HOUR = 3600.0
A = offer("a", 10, od=1.0, r1=0.6, r3=0.4)  # break-even 60% (1y), 40% (3y)
B = offer("b", 10, od=1.0, r1=0.7)  # break-even 70%


def hourly(days: float, rps: float) -> np.ndarray:
    return np.full(int(days * 24), rps)


def test_steady_demand_long_history_is_well_evidenced():
    [e] = reservation_evidence({("a", "reserved_1y"): 2}, [A], hourly(60, 25.0), HOUR)
    assert (e.offer, e.term, e.count) == ("a", "reserved_1y", 2)
    assert e.break_even_utilization == pytest.approx(0.6)
    assert e.history_days == pytest.approx(60)
    assert e.term_days == 365 and e.min_history_days == pytest.approx(365 / 12)
    assert e.layer_rps == (0.0, 20.0)
    assert e.mean_utilization == 1.0 and e.last_instance_utilization == 1.0
    assert e.margin == pytest.approx(0.4) and e.days_above_break_even == 1.0
    assert e.warnings == () and not e.thin


def test_a_week_is_too_thin_for_any_term():
    # One week of a perfectly steady series: the use is there, the history is not.
    ev = reservation_evidence({("a", "reserved_1y"): 1, ("a", "reserved_3y"): 1}, [A], hourly(7, 25.0), HOUR)
    assert [e.term for e in ev] == ["reserved_1y", "reserved_3y"]  # highest break-even at the bottom
    for e in ev:
        assert e.thin and len(e.warnings) == 1
        assert "rests on 7.0 days of history" in e.warnings[0]
    assert "at least 30 days" in ev[0].warnings[0] and "at least 91 days" in ev[1].warnings[0]
    # 60 days clear a 1-year term but not a 3-year one
    long = reservation_evidence({("a", "reserved_1y"): 1, ("a", "reserved_3y"): 1}, [A], hourly(60, 25.0), HOUR)
    assert [e.thin for e in long] == [False, True]


def test_one_hour_of_a_trace_says_hours():
    [e] = reservation_evidence({("a", "reserved_3y"): 1}, [A], np.array([30.0]), HOUR)
    assert e.history_days == pytest.approx(1 / 24)
    assert e.thin and "rests on 1.0 hours of history" in e.warnings[0]
    assert e.days_above_break_even == 1.0  # one window, used throughout


def test_layers_stack_from_the_highest_break_even():
    # 15 req/s steady: the bottom layer (b, 70%) is full, the top one (a 3y, 40%) half used.
    ev = reservation_evidence({("a", "reserved_3y"): 1, ("b", "reserved_1y"): 1}, [A, B], hourly(100, 15.0), HOUR)
    assert [(e.offer, e.layer_rps) for e in ev] == [("b", (0.0, 10.0)), ("a", (10.0, 20.0))]
    assert ev[0].last_instance_utilization == 1.0
    assert ev[1].last_instance_utilization == pytest.approx(0.5)
    assert ev[1].margin == pytest.approx(0.1)
    assert ev[1].history_days > ev[1].min_history_days and ev[1].days_above_break_even == 1.0
    assert not ev[0].thin and not ev[1].thin


def test_peaky_demand_flags_the_last_instance():
    # Half of each day at 30 req/s, half at 5: the second reserved instance is used 50% of the time (< 60%).
    day = np.r_[np.full(12, 30.0), np.full(12, 5.0)]
    [e] = reservation_evidence({("a", "reserved_1y"): 2}, [A], np.tile(day, 60), HOUR)
    assert e.mean_utilization == pytest.approx((1.0 + 0.25) / 2)
    assert e.last_instance_utilization == pytest.approx(0.5)
    assert e.margin == pytest.approx(-0.1)
    assert e.days_above_break_even == 0.0
    assert e.thin and len(e.warnings) == 2
    assert "used 50% of the time, below break-even (60%)" in e.warnings[0]
    assert "used at or above break-even (60%) on 0% of the history's days" in e.warnings[1]
    # one reservation fewer: the first instance is used 75% of the time (full, then 5 of 10 req/s): no warning
    [one] = reservation_evidence({("a", "reserved_1y"): 1}, [A], np.tile(day, 60), HOUR)
    assert one.last_instance_utilization == pytest.approx(0.75) and not one.thin


def test_quiet_weekends_alone_do_not_flag_a_reservation():
    # Weekdays at 25 req/s, weekends at 5: the instance is full 5 days in 7 and half used on the other two.
    week = np.r_[np.full(5 * 24, 25.0), np.full(2 * 24, 5.0)]
    [e] = reservation_evidence({("a", "reserved_1y"): 1}, [A], np.tile(week, 14), HOUR)
    assert e.days_above_break_even == pytest.approx(5 / 7)
    assert e.last_instance_utilization == pytest.approx((5 + 2 * 0.5) / 7)
    assert not e.thin
    # one quiet day more and it is flagged
    week = np.r_[np.full(4 * 24, 25.0), np.full(3 * 24, 5.0)]
    [e] = reservation_evidence({("a", "reserved_1y"): 1}, [A], np.tile(week, 14), HOUR)
    assert e.thin and e.warnings == (("its last instance was used at or above break-even (60%) on 57% of the "
                                      "history's days (the rule asks for 5 days in 7, 71%)"),)


def test_days_above_counts_days_not_periods():
    # 40 steady days then 20 idle days: the instance is above break-even on two thirds of the days.
    history = np.r_[hourly(40, 12.0), hourly(20, 0.0)]
    [e] = reservation_evidence({("a", "reserved_1y"): 1}, [A], history, HOUR)
    assert e.days_above_break_even == pytest.approx(40 / 60)
    assert 40 / 60 < MIN_DAYS_ABOVE_BREAK_EVEN and e.thin


def test_missing_values_are_not_history():
    history = np.r_[hourly(40, 25.0), np.full(24 * 20, np.nan)]
    [e] = reservation_evidence({("a", "reserved_1y"): 1}, [A], history, HOUR)
    assert e.history_days == pytest.approx(40)


def test_no_on_demand_price_has_no_break_even():
    o = offer("r", 10, od=None, spot=0.3, r1=0.6)
    [e] = reservation_evidence({("r", "reserved_1y"): 1}, [o], hourly(60, 25.0), HOUR)
    assert e.break_even_utilization is None and e.margin is None
    assert e.thin and "no on-demand price" in e.warnings[0]


def test_nothing_reserved_nothing_to_evidence():
    assert reservation_evidence({}, [A], hourly(7, 25.0), HOUR) == []
    assert reservation_evidence({("a", "reserved_1y"): 0}, [A], hourly(7, 25.0), HOUR) == []


def test_to_dict_and_rule():
    [e] = reservation_evidence({("a", "reserved_1y"): 2}, [A], hourly(7, 25.0), HOUR)
    d = e.to_dict()
    assert d["offer"] == "a" and d["count"] == 2 and d["thin"] is True
    assert d["layer_rps"] == [0.0, 20.0] and isinstance(d["warnings"], list)
    assert {"history_days", "break_even_utilization", "margin", "days_above_break_even"} <= set(d)
    rule = evidence_rule()
    assert "1 month per year of term" in rule and "5 days in 7" in rule and "below break-even on average" in rule


# ----------------------------------------------------------------------------- wired into compare / plan_forward

RESERVABLE = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, r3=1.8, hazard=0.05),
              offer("small", 6, od=1.5, spot=0.5, r1=1.0, hazard=0.1)]


@pytest.fixture(scope="module")
def series():
    return synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1)


def test_compare_evidences_each_reservation_on_the_training_days(series):
    cmp = compare(series, RESERVABLE, train_days=3, eval_days=1)
    held = {k: n for k, n in cmp.reservation_plan.reserved.items() if n > 0}
    assert held, "the synthetic series should make a reservation worth buying"
    assert {(e.offer, e.term): e.count for e in cmp.evidence} == held
    for e in cmp.evidence:
        assert e.history_days == pytest.approx(3.0)
        assert e.thin and "rests on 3.0 days" in e.warnings[0]


def test_plan_forward_evidences_on_the_whole_series(series):
    fp = plan_forward(series, RESERVABLE, 48)
    held = {k: n for k, n in fp.allocation.reserved.items() if n > 0}
    assert {(e.offer, e.term): e.count for e in fp.evidence} == held
    assert all(e.history_days == pytest.approx(4.0) and e.thin for e in fp.evidence)


def test_plan_forward_without_reservations_has_no_evidence():
    fp = plan_forward(RateSeries(0.0, HOUR, np.zeros(72)), RESERVABLE, 24)
    assert fp.evidence == []
