"""Capacity offers from a plan: the cheapest offers per req/s, plus a fine-grained one to follow demand."""

from __future__ import annotations

import pytest

from fleetwise.allocate.fromplan import offers_from_plan
from fleetwise.plan.search import SLO, PlanRequest, plan
from fleetwise.plan.workload import BUILTIN

RATE = 200.0


@pytest.fixture(scope="module")
def result():
    wl = BUILTIN["chat"].with_overrides(isl=914, osl=155, rate_rps=RATE)
    return plan(PlanRequest(["llama-3.1-8b"], wl, SLO(1000, 50), clouds=["aws"]))


@pytest.fixture(scope="module")
def every(result):
    return offers_from_plan(result, top=10_000, fine_fraction=0)


def unit_price(o):
    return min(o.prices.values()) / o.capacity_rps


def test_ranked_by_best_tier_price_per_capacity(result, every):
    assert len({o.id for o in every}) == len(every) > 6
    prices = [unit_price(o) for o in every]
    assert prices == sorted(prices)
    assert offers_from_plan(result, top=3, fine_fraction=0) == every[:3]


def test_a_fine_grained_offer_joins_large_top_offers(result, every):
    limit = 0.25 * RATE
    k = next(i for i, o in enumerate(every) if o.capacity_rps <= limit)  # the cheapest k are all big nodes
    assert k >= 3  # the premise
    top = every[:k]
    got = offers_from_plan(result, top=k)
    assert got[:k] == top
    extra = got[k:]
    assert extra and all(o.capacity_rps <= limit for o in extra)
    small = [o for o in every if o.capacity_rps <= limit]
    # Each tier's cheapest small offer per req/s is there, and nothing else is added.
    wanted = {min((o for o in small if t in o.prices), key=lambda o: o.prices[t] / o.capacity_rps).id
              for t in {t for o in small for t in o.prices}}
    assert {o.id for o in extra} == wanted
    assert len(extra) == len(wanted)


def test_nothing_added_when_a_top_offer_is_small_enough(result, every):
    # With the limit at the largest top offer, the top already holds an offer that small: nothing joins.
    biggest = max(o.capacity_rps for o in every[:6])
    got = offers_from_plan(result, top=6, fine_fraction=biggest / RATE)
    assert got == every[:6]
    assert offers_from_plan(result, top=6, fine_fraction=0) == every[:6]
