"""fleetwise.allocate.optimize: the whole of ``fleetwise optimize`` as one library call -- the same offers,
forward plan and comparison as calling its parts by hand, and its checks before any planning."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fleetwise.allocate import optimize
from fleetwise.allocate.coldstart import cold_start_s as estimate
from fleetwise.allocate.compare import compare
from fleetwise.allocate.forecast_plan import plan_forward
from fleetwise.allocate.fromplan import offers_from_plan
from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic import SyntheticSpec, synthetic_series
from fleetwise.traffic.records import RateSeries

FAST = {"model": "llama-3.1-8b", "clouds": ["aws"], "gpus": ["h100"], "offers_top": 2}  # plans in about a second


@pytest.fixture(scope="module")
def series():
    return synthetic_series(SyntheticSpec(days=4, period_s=1800, base_rps=50), seed=1)


def _recorded(series, **kw):
    phases, notes = [], []
    result = optimize(series, **FAST, progress=lambda phase, done, total: phases.append((phase, done, total)),
                      on_cold_start=notes.append, **kw)
    return result, phases, notes


@pytest.fixture(scope="module")
def forward(series):
    return _recorded(series, horizon_steps=48)


@pytest.fixture(scope="module")
def fluid(series):
    return _recorded(series, train_days=3, eval_days=1, cold_start_s=200.0)


def _same_evaluations(got, want):
    assert [(e.name, e.applicable) for e in got] == [(e.name, e.applicable) for e in want]
    for g, w in zip(got, want, strict=True):
        if w.applicable:
            assert g.cost_usd == pytest.approx(w.cost_usd)
            assert g.unmet_demand_fraction == pytest.approx(w.unmet_demand_fraction)


def test_offers_come_from_the_plan_it_returns(series, forward):
    result, _, _ = forward
    assert result.offers and all(o.id.startswith("aws/") for o in result.offers)
    again = offers_from_plan(result.planned, top=2)
    assert [(o.id, o.capacity_rps) for o in result.offers] == [(o.id, o.capacity_rps) for o in again]
    assert result.planned.request.workload.rate_rps == pytest.approx(float(np.nanmean(series.values)))


def test_forward_plan_estimates_the_cold_start_and_equals_plan_forward(series, forward):
    result, phases, notes = forward
    assert result.comparison is None and result.requests is None and result.forward is not None
    assert result.cold_start_estimated
    assert result.cold_start_s == max(estimate("llama-3.1-8b", o.precision or "bf16") for o in result.offers)
    assert result.cold_start_s > 120  # boot alone is 120 s
    assert notes == [result.cold_start_s]
    assert [p for p, _, _ in phases] == ["offers", "forward"]
    want = plan_forward(series, result.offers, 48, quantile=0.95, rules=result.rules)
    got = result.forward
    assert len(got.allocation.demand_rps) == 48
    assert got.allocation.total_usd == pytest.approx(want.allocation.total_usd)
    assert got.allocation.reserved == want.allocation.reserved
    _same_evaluations(got.baselines, want.baselines)


def test_evaluation_takes_the_given_cold_start_and_equals_compare(series, fluid):
    result, phases, notes = fluid
    assert result.forward is None and result.requests is None and result.comparison is not None
    assert not result.cold_start_estimated and result.cold_start_s == 200.0 and notes == []
    assert phases[0] == ("offers", 0, None) and phases[1] == ("operate", 0, None)
    assert {p for p, _, _ in phases} == {"offers", "operate"}
    assert phases[-1] == ("operate", 0, 48)  # the rolling layer's count: one step per period of the day operated
    want = compare(series, result.offers, train_days=3, eval_days=1, quantile=0.95, rules=result.rules)
    got = result.comparison
    np.testing.assert_allclose(got.demand_rps, series.values[144:192])
    assert got.fleetwise.cost_usd == pytest.approx(want.fleetwise.cost_usd)
    assert got.hindsight.cost_usd == pytest.approx(want.hindsight.cost_usd)
    assert got.fleetwise.cost_usd >= got.hindsight.cost_usd * 0.98
    _same_evaluations(got.baselines, want.baselines)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"train_days": 3, "eval_days": 2}, "3 training + 2 evaluation days do not fit"),
    ({"train_days": float("nan"), "eval_days": 1}, "training days must be a finite number"),
    ({"train_days": 3}, "go together"),
    ({"evaluate": "requests"}, "needs training and evaluation days"),
    ({"evaluate": "requests", "train_days": 3, "eval_days": 1, "catalog": "seed-scenario"}, "catalog"),
    ({"evaluate": "requests", "train_days": 3, "eval_days": 1, "windows_per_day": 200, "requests_per_day": 150},
     "windows per day"),
    ({"evaluate": "request"}, "fluid, requests"),
    ({"horizon_steps": 0}, "at least one period"),
    ({"horizon_steps": 20_000}, "at most 10,000 periods"),
    ({"quantile": 1.5}, "quantile"),
    ({"cold_start_s": float("inf")}, "cold start"),
    ({"max_spot_share": 2.0}, "spot share"),
], ids=["window-too-long", "window-nan", "train-alone", "requests-without-window", "requests-with-catalog",
        "windows-over-budget", "unknown-mode", "horizon-0", "horizon-too-long", "quantile", "cold-start",
        "spot-share"])
def test_bad_knobs_fail_before_planning_without_naming_flags(series, monkeypatch, kw, needle):
    monkeypatch.setattr("fleetwise.plan.search.plan", _no_planning)
    with pytest.raises(ConfigError, match=re.escape(needle)) as exc:
        optimize(series, **kw)
    assert "--" not in str(exc.value)


def test_default_horizon_is_30_days_and_checked_before_planning(monkeypatch):
    monkeypatch.setattr("fleetwise.plan.search.plan", _no_planning)
    with pytest.raises(ConfigError, match="43,200 periods of 60 s"):  # 30 days of minutes
        optimize(RateSeries(0.0, 60.0, np.ones(600)))


def test_a_series_without_values_fails_before_planning(monkeypatch):
    monkeypatch.setattr("fleetwise.plan.search.plan", _no_planning)
    with pytest.raises(InputFormatError, match="every bin is missing"):
        optimize(RateSeries(0.0, 3600.0, np.full(48, np.nan)))


def _no_planning(*args, **kwargs):
    raise AssertionError("planned before checking its inputs")
