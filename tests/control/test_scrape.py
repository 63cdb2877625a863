"""Reading workers' /metrics: vLLM V1, V0 and SGLang names; histogram quantiles and windows."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fleetwise.control.observe import observe
from fleetwise.control.scrape import delta, merge, parse_metrics, quantile, share_within
from fleetwise.control.types import SERVING, Histogram, Worker, WorkerMetrics
from fleetwise.emulate.metrics import EngineMetrics

V0_TEXT = """# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.87
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 5
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 7
vllm:request_success_total{finished_reason="length",model_name="m"} 3
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} 4
vllm:time_per_output_token_seconds_bucket{le="0.05",model_name="m"} 10
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 10
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.2
vllm:time_per_output_token_seconds_count{model_name="m"} 10
"""

SGLANG_TEXT = """sglang:token_usage{model_name="q"} 0.52
sglang:num_running_reqs{model_name="q"} 8
sglang:num_queue_reqs{model_name="q"} 4
sglang:num_requests_total{model_name="q"} 21
sglang:generation_tokens_total{model_name="q"} 900
"""


def test_vllm_v0_names_are_read_through_the_alias_table():
    m = parse_metrics(V0_TEXT, 1.0)
    assert (m.kv_usage, m.running, m.waiting, m.finished) == (0.87, 5, 2, 10)
    assert m.itl is not None and m.itl.count == 10 and m.itl.bounds[-1] == math.inf


def test_sglang_names_are_read_through_the_alias_table():
    m = parse_metrics(SGLANG_TEXT, 1.0)
    assert (m.kv_usage, m.running, m.waiting, m.finished, m.generation_tokens) == (0.52, 8, 4, 21, 900)
    assert m.complete


def test_the_emulators_own_metrics_parse_completely():
    from prometheus_client import CollectorRegistry, generate_latest

    metrics = EngineMetrics("llama-3.1-8b", max_model_len=8192)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    m = parse_metrics(generate_latest(registry).decode(), 2.0)
    assert m.complete and m.finished == 0 and m.ttft is not None and m.itl is not None and m.tpot is not None


def test_quantile_interpolates_like_promql_histogram_quantile():
    h = Histogram((0.1, 0.5, 1.0, math.inf), (10, 60, 100, 100))
    assert quantile(h, 0.5) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert quantile(h, 0.95) == pytest.approx(0.5 + 0.5 * (95 - 60) / 40)
    assert quantile(Histogram((1.0, math.inf), (0, 5)), 0.9) == 1.0  # in +Inf: the largest finite bound
    assert math.isnan(quantile(Histogram((1.0, math.inf), (0, 0)), 0.5))
    assert share_within(h, 0.5) == pytest.approx(0.6)
    assert share_within(h, 0.75) == pytest.approx(0.8)


def test_window_deltas_handle_resets_and_mixed_bounds():
    old = Histogram((1.0, math.inf), (4, 5), 3.0)
    new = Histogram((1.0, math.inf), (10, 12), 8.0)
    assert delta(new, old).counts == (6, 7)
    assert delta(old, new) == old  # counters went down: the worker restarted
    assert merge([new, None, Histogram((2.0, math.inf), (1, 1))]).counts == (10, 12)


def test_arrivals_are_finished_plus_growth_of_requests_in_the_system():
    w = [Worker("a", "p", "on_demand", SERVING, "http://a"), Worker("b", "p", "spot", SERVING, "http://b")]
    before = {"a": WorkerMetrics(t=0.0, finished=10, running=2, waiting=0),
              "b": WorkerMetrics(t=0.0, finished=0, running=0, waiting=0)}
    now = {"a": WorkerMetrics(t=10.0, finished=30, running=5, waiting=1),
           "b": WorkerMetrics(t=10.0, finished=10, running=0, waiting=0)}
    obs = observe(w, now, before, 1.0, 0.05, time_scale=2.0)
    assert obs.window_s == 20.0  # wall seconds x time scale
    assert obs.arrivals_rps == pytest.approx((20 + 4 + 10) / 20.0)
    assert obs.finished_rps == pytest.approx(30 / 20.0)
    assert not obs.stale and obs.running == 5 and obs.waiting == 1
    missing = observe(w, {"a": now["a"]}, before, 1.0, 0.05)
    assert missing.stale


def test_decode_speed_is_judged_on_per_request_tpot_where_the_engine_exports_it():
    """A p95 of single inter-token gaps is stricter than a TPOT SLO (a p95 of per-request means): one stall
    puts many gaps in the tail but moves each request's mean little. The observation carries both; the
    controller sizes on per-request TPOT when the engine exports it (vLLM V1), else on ITL."""
    from fleetwise.control.types import Histogram

    bounds = (0.025, 0.05, 0.1, float("inf"))
    w = [Worker("a", "p", "on_demand", SERVING, "http://a")]
    before = {"a": WorkerMetrics(t=0.0, finished=0, running=0, waiting=0, itl=Histogram(bounds, (0, 0, 0, 0), 0.0),
                                 tpot=Histogram(bounds, (0, 0, 0, 0), 0.0))}
    now = {"a": WorkerMetrics(t=10.0, finished=100, running=0, waiting=0,
                              itl=Histogram(bounds, (800, 880, 1000, 1000), 40.0),  # 12% of gaps over 50 ms
                              tpot=Histogram(bounds, (90, 100, 100, 100), 3.0))}  # every request's mean under
    obs = observe(w, now, before, 1.0, 0.05)
    assert obs.itl_p95_s > 0.05 and obs.tpot_p95_s <= 0.05
    without = {"a": dataclasses.replace(now["a"], tpot=None)}
    assert math.isnan(observe(w, without, before, 1.0, 0.05).tpot_p95_s)
