"""Configuration search: ranking, SLO compliance, rejection reasons, monotonicity in traffic."""

import pytest

from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.plan.search import SLO, PlanRequest, pareto_front, plan
from fleetwise.plan.workload import LengthDist, Workload, get_workload


def request(rate=10.0, **kw):
    wl = Workload("t", LengthDist(1000), LengthDist(250), rate)
    base = {"models": ["llama-3.1-8b"], "workload": wl, "slo": SLO(1000, 50), "clouds": ["aws"],
                "gpus": ["h100", "l4", "a10g"], "batch_caps": (32, 128), "verify_top": 2, "sim_requests": 200}
    base.update(kw)
    return PlanRequest(**base)


@pytest.fixture(scope="module")
def result():
    return plan(request())


def test_ranked_cheapest_first_and_meets_slo(result):
    costs = [c.usd_per_hour for c in result.candidates]
    assert costs == sorted(costs)
    best = result.best
    assert best.verified, "the top candidate is checked by simulation"
    assert best.slo_ttft_ms <= 1000 and best.slo_tpot_ms <= 50
    assert best.goodput_rps * best.replicas >= 10 - 1e-9
    assert best.instances * (best.usd_per_hour / best.instances) == pytest.approx(best.usd_per_hour)


def test_rejections_say_why(result):
    reasons = " ".join(r.reason for r in result.rejected)
    assert "not supported natively" in reasons  # fp8 / fp4 on Ampere (a10g)
    assert result.evaluated >= len(result.candidates)


def test_more_traffic_never_cheaper():
    low = plan(request(rate=2.0)).best.usd_per_hour
    high = plan(request(rate=40.0)).best.usd_per_hour
    assert high >= low


def test_impossible_slo_explains_itself():
    with pytest.raises(InfeasibleError, match="no configuration serves"):
        plan(request(slo=SLO(1, 1)))


def test_no_matching_offer():
    with pytest.raises(InfeasibleError, match="no instance offer"):
        plan(request(clouds=["nowhere"]))


def test_bad_slo_and_workload():
    with pytest.raises(ConfigError):
        SLO(-1, 50)
    with pytest.raises(ConfigError):
        get_workload("nope")


def test_pareto_front_excludes_dominated(result):
    front = pareto_front(result.candidates)
    assert 0 in front  # the cheapest is never dominated on cost
    for i in front:
        c = result.candidates[i]
        assert not any(
            o.usd_per_hour <= c.usd_per_hour and o.slo_ttft_ms <= c.slo_ttft_ms and o.slo_tpot_ms <= c.slo_tpot_ms
            and (o.usd_per_hour, o.slo_ttft_ms, o.slo_tpot_ms) != (c.usd_per_hour, c.slo_ttft_ms, c.slo_tpot_ms)
            for o in result.candidates
        )


def test_lognormal_lengths_hit_mean_and_p95():
    import numpy as np

    d = LengthDist(1000, 3000)
    x = d.sample(200_000, np.random.default_rng(0))
    assert x.mean() == pytest.approx(1000, rel=0.03)
    assert np.percentile(x, 95) == pytest.approx(3000, rel=0.03)
