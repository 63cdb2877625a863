"""Capacity offers and the spot-availability model."""

from __future__ import annotations

import math

import pytest

from fleetwise.allocate.offers import WARNING_S, CapacityOffer, spot_availability
from fleetwise.errors import ConfigError


@pytest.mark.parametrize(("hazard", "replace_s", "expected"), [
    (0.05, 300.0, 1 / (1 + 0.05 * 180 / 3600)),  # the seed scenario: 1/1.0025
    (0.5, 300.0, 1 / (1 + 0.5 * 180 / 3600)),
    (2.0, 480.0, 1 / (1 + 2.0 * 360 / 3600)),  # = 1/1.2
    (1.0, 3720.0, 0.5),  # one hour of down-time per expected hour up
    (0.0, 900.0, 1.0),  # no interruptions
    (3.0, 120.0, 1.0),  # the replacement is up before the notice runs out
    (3.0, 30.0, 1.0),  # never negative down-time
])
def test_spot_availability_formula(hazard, replace_s, expected):
    assert spot_availability(hazard, replace_s) == pytest.approx(expected, rel=1e-12)
    assert spot_availability(hazard, replace_s) == pytest.approx(
        1 / (1 + hazard * max(replace_s - 120, 0) / 3600), rel=1e-12)


def test_spot_availability_warning_and_monotone():
    assert WARNING_S == 120.0
    assert spot_availability(1.0, 300.0, warning_s=30.0) == pytest.approx(1 / (1 + 270 / 3600))
    values = [spot_availability(h, 600.0) for h in (0.0, 0.1, 0.5, 1.0, 5.0)]
    assert values == sorted(values, reverse=True)
    values = [spot_availability(0.5, s) for s in (0.0, 120.0, 300.0, 900.0, 3600.0)]
    assert values == sorted(values, reverse=True)
    assert all(0 < v <= 1 for v in values)


def test_offer_caps_and_break_even():
    o = CapacityOffer("x", 12.5, {"on_demand": 4.0, "reserved_1y": 2.6, "reserved_3y": 1.8, "spot": 1.2},
                      max_instances={"spot": 3})
    assert o.cap("spot") == 3.0
    assert math.isinf(o.cap("on_demand"))
    assert o.price("spot") == 1.2 and o.price("nope") is None
    assert o.break_even_utilization("reserved_1y") == pytest.approx(0.65)
    assert o.break_even_utilization("reserved_3y") == pytest.approx(0.45)
    assert CapacityOffer("y", 1.0, {"spot": 1.0}).break_even_utilization("reserved_1y") is None
    assert CapacityOffer("z", 1.0, {"reserved_1y": 1.0}).break_even_utilization("reserved_1y") is None


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"capacity_rps": 0.0, "prices": {"on_demand": 1.0}}, "capacity"),
    ({"capacity_rps": float("nan"), "prices": {"on_demand": 1.0}}, "capacity"),
    ({"capacity_rps": 1.0, "prices": {}}, "no prices"),
    ({"capacity_rps": 1.0, "prices": {"on_demand": 1.0}, "hazard_per_hour": -0.1}, "hazard"),
])
def test_offer_rejects_bad_values(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        CapacityOffer("bad", **kwargs)
