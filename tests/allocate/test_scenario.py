"""The seed scenario (Llama-70B on 8xH100 nodes), recomputed from its own inputs."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.offers import spot_availability
from fleetwise.allocate.scenario import HOURS, PUBLISHED, seed_demand, seed_offer, seed_scenario

OD, RES, SPOT = 32.77, 19.06, 9.83
LEAD_H = 300 / 3600  # the default cold start


@pytest.fixture(scope="module")
def rows():
    return {r.strategy: r for r in seed_scenario()}


def test_seed_inputs():
    d = seed_demand()
    assert d.shape == (730,) and HOURS == 730
    assert set(np.unique(d)) == {2.0, 4.0}
    assert d[:24].tolist() == [2] * 9 + [4] * 8 + [2] * 7  # 09:00-17:00 at 4 nodes
    o = seed_offer()
    assert o.capacity_rps == 1.0
    assert o.prices == {"on_demand": OD, "reserved_1y": RES, "spot": SPOT}
    assert o.hazard_per_hour == 0.05


def test_four_rows_in_order(rows):
    assert list(rows) == ["All on-demand", "All reserved (1yr)", "Reserved + spot burst", "Hybrid optimized"]
    for name, r in rows.items():
        assert r.published_usd == PUBLISHED[name]


def test_all_on_demand(rows):
    r = rows["All on-demand"]
    assert r.monthly_usd == pytest.approx(4 * OD * 730, rel=0.005)
    assert r.monthly_usd == pytest.approx(4 * OD * 730 + 4 * OD * LEAD_H)  # 4 starts at the beginning
    assert (r.reserved, r.on_demand, r.spot) == (0, "4 / 4", "0 / 0")
    assert r.savings_vs_on_demand == 0.0 and r.unmet_demand_fraction == 0.0
    assert r.verdict.startswith("follows")


def test_all_reserved(rows):
    r = rows["All reserved (1yr)"]
    assert r.monthly_usd == pytest.approx(4 * RES * 730)
    assert (r.reserved, r.on_demand, r.spot) == (4, "0 / 0", "0 / 0")
    assert r.savings_vs_on_demand == pytest.approx(1 - 4 * RES * 730 / rows["All on-demand"].monthly_usd)
    assert r.verdict.startswith("follows")


def test_reserved_plus_spot_burst(rows):
    d = seed_demand()
    peak_hours = int((d == 4).sum())
    bursts = int(np.sum(np.diff(np.concatenate([[0], (d == 4).astype(int)])) > 0))
    assert (peak_hours, bursts) == (241, 31)  # 30 full days of 8 h plus 1 h on day 31
    expected = 2 * RES * 730 + SPOT * (2 * peak_hours + 2 * bursts * LEAD_H)
    r = rows["Reserved + spot burst"]
    assert r.monthly_usd == pytest.approx(expected)
    assert r.monthly_usd == pytest.approx(2 * RES * 730 + 2 * SPOT * 8 * 730 / 24, rel=0.01)
    assert (r.reserved, r.on_demand, r.spot) == (2, "0 / 0", "2 / 0")
    # two spot nodes are worth 2 x availability of a node: a small expected shortfall in the peak
    a = spot_availability(0.05, 300.0)
    assert r.unmet_demand_fraction == pytest.approx(peak_hours * 2 * (1 - a) / d.sum())
    assert r.verdict.startswith("does not follow")
    assert "2 reserved + 2 spot" in r.verdict


def test_hybrid_optimized(rows):
    r = rows["Hybrid optimized"]
    burst = rows["Reserved + spot burst"]
    assert r.monthly_usd <= burst.monthly_usd * 1.1
    assert r.monthly_usd < rows["All reserved (1yr)"].monthly_usd
    assert r.unmet_demand_fraction == 0.0
    assert r.reserved == 2
    assert r.spot == "3 / 0"  # covering 2 nodes with spot alone takes 3 at 99.75% availability
    assert r.savings_vs_on_demand == pytest.approx(1 - r.monthly_usd / rows["All on-demand"].monthly_usd)
    assert r.verdict.startswith("does not follow")
    assert "cheaper" in r.verdict


def test_verdicts_compare_with_published_totals(rows):
    for r in rows.values():
        diff = r.published_usd / r.monthly_usd - 1
        assert r.verdict.startswith("follows") == (abs(diff) <= 0.02)
        assert f"{diff:+.0%}" in r.verdict or f"{diff:+.1%}" in r.verdict
