"""Cost model against hand-computed values."""

import math

import pytest

from fleetwise.catalog import load_catalog
from fleetwise.cost import (
    HOURS_PER_MONTH,
    replica_usd_per_hour,
    replicas_per_instance,
    serving_cost,
    usd_per_million,
)
from fleetwise.errors import ConfigError, InfeasibleError


def seed_offer(name):
    return load_catalog("seed-scenario").offer(name)


def test_usd_per_million_follows_the_formula():
    # $32.77/h at 10,000 tokens/s: 32.77 / 3600 / 10000 * 1e6 = 0.910278 USD per 1M tokens
    assert usd_per_million(32.77, 10_000) == pytest.approx(32.77 / 3600 / 10_000 * 1e6)
    assert usd_per_million(32.77, 10_000) == pytest.approx(0.910278, rel=1e-5)
    assert math.isinf(usd_per_million(1.0, 0))


def test_replicas_share_an_instance_and_idle_gpus_are_paid():
    h100 = seed_offer("h100_8x")
    assert replicas_per_instance(h100, 4) == 2
    assert replicas_per_instance(h100, 3) == 2  # 2 GPUs idle but paid
    assert replica_usd_per_hour(h100, "on_demand", 4) == pytest.approx(32.77 / 2)
    assert replica_usd_per_hour(h100, "reserved_1y", 8) == pytest.approx(19.06)
    assert replica_usd_per_hour(h100, "spot", 1) == pytest.approx(9.83 / 8)


def test_missing_tier_and_oversized_replica_are_infeasible():
    h100 = seed_offer("h100_8x")
    with pytest.raises(InfeasibleError, match="reserved_3y"):
        replica_usd_per_hour(h100, "reserved_3y", 8)
    with pytest.raises(InfeasibleError, match="needs 16"):
        replica_usd_per_hour(h100, "on_demand", 16)
    with pytest.raises(ConfigError):
        replica_usd_per_hour(h100, "bogus", 8)


def test_serving_cost_breakdown():
    cost = serving_cost(10.0, 3, rate_rps=5.0, mean_isl=1000, mean_osl=200, capacity_rps_per_replica=2.5,
                        overhead_pct=10)
    assert cost.usd_per_hour == pytest.approx(33.0)
    assert cost.usd_per_month == pytest.approx(33.0 * HOURS_PER_MONTH)
    assert cost.usd_per_1m_output_tokens == pytest.approx(33.0 / 3600 / (5 * 200) * 1e6)
    assert cost.usd_per_1m_total_tokens == pytest.approx(33.0 / 3600 / (5 * 1200) * 1e6)
    assert cost.usd_per_request == pytest.approx(33.0 / 3600 / 5)
    assert cost.utilization == pytest.approx(5 / 7.5)
    with pytest.raises(ConfigError):
        serving_cost(10.0, 0, rate_rps=5, mean_isl=1, mean_osl=1, capacity_rps_per_replica=1)
