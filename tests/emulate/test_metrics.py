"""Tests for fleetwise.emulate.metrics: vLLM's names, types, labels and buckets, and their counts."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetwise.emulate.metrics import EngineMetrics, build_1_2_5_buckets

# Bucket boundaries copied by hand from vLLM 0.33.0 (commit 4ba787ec9), vllm/v1/metrics/buckets.py:
# REQUEST_LATENCY_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS, INTER_TOKEN_LATENCY_BUCKETS, ITERATION_TOKENS_BUCKETS.
# Written out here rather than imported so that a typo in the module cannot also pass its own test.
VLLM_REQUEST_LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                        120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
             40.0, 80.0, 160.0, 640.0, 2560.0]
VLLM_ITL = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
            40.0, 80.0]
VLLM_ITERATION_TOKENS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
# build_1_2_5_buckets(131072), vLLM's default max_model_len here: 1-2-5 steps up to 100000.
VLLM_TOKENS_131072 = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]

# name -> (type, extra label names beyond model_name/engine, buckets or None); from vLLM 0.33.0
# vllm/v1/metrics/loggers.py, PrometheusStatLogger.__init__.
EXPECTED = {
    "vllm:num_requests_running": ("gauge", (), None),
    "vllm:num_requests_waiting": ("gauge", (), None),
    "vllm:num_requests_waiting_by_reason": ("gauge", ("reason",), None),
    "vllm:kv_cache_usage_perc": ("gauge", (), None),
    "vllm:prompt_tokens": ("counter", (), None),
    "vllm:generation_tokens": ("counter", (), None),
    "vllm:request_success": ("counter", ("finished_reason",), None),
    "vllm:num_preemptions": ("counter", (), None),
    "vllm:time_to_first_token_seconds": ("histogram", (), VLLM_TTFT),
    "vllm:inter_token_latency_seconds": ("histogram", (), VLLM_ITL),
    "vllm:request_time_per_output_token_seconds": ("histogram", (), VLLM_ITL),
    "vllm:e2e_request_latency_seconds": ("histogram", (), VLLM_REQUEST_LATENCY),
    "vllm:request_queue_time_seconds": ("histogram", (), VLLM_REQUEST_LATENCY),
    "vllm:request_inference_time_seconds": ("histogram", (), VLLM_REQUEST_LATENCY),
    "vllm:request_prefill_time_seconds": ("histogram", (), VLLM_REQUEST_LATENCY),
    "vllm:request_decode_time_seconds": ("histogram", (), VLLM_REQUEST_LATENCY),
    "vllm:request_prompt_tokens": ("histogram", (), VLLM_TOKENS_131072),
    "vllm:request_generation_tokens": ("histogram", (), VLLM_TOKENS_131072),
    "vllm:request_params_max_tokens": ("histogram", (), VLLM_TOKENS_131072),
    "vllm:iteration_tokens_total": ("histogram", (), VLLM_ITERATION_TOKENS),
}


def families(metrics: EngineMetrics) -> dict:
    """Parse the rendered page back, as a Prometheus scraper would."""
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def sample(metrics: EngineMetrics, name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    found = [s.value for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples
             if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def buckets(metrics: EngineMetrics, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` keyed by their upper bound."""
    fams = families(metrics)
    return {float(s.labels["le"]): s.value for s in fams[name].samples if s.name == name + "_bucket"}


def test_every_vllm_metric_is_exposed_with_its_type_and_labels() -> None:
    m = EngineMetrics("llama-8b", engine="3")
    fams = families(m)
    assert set(fams) == set(EXPECTED)
    for name, (kind, extra_labels, _) in EXPECTED.items():
        assert fams[name].type == kind, name
        assert fams[name].samples, name
        for s in fams[name].samples:
            label_names = set(s.labels) - {"le"}
            assert label_names == {"model_name", "engine", *extra_labels}, (name, s)
            assert (s.labels["model_name"], s.labels["engine"]) == ("llama-8b", "3")


def test_counter_samples_carry_the_total_suffix_vllm_dashboards_query() -> None:
    text = EngineMetrics("m").render().decode()
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_preemptions_total",
                 "vllm:request_success_total"):
        assert f"# TYPE {name} counter" in text
        assert f"\n{name}{{" in text


def test_every_finished_reason_is_exported_from_the_start() -> None:
    # vLLM pre-labels all of FINISH_REASON_STRINGS (vllm/v1/engine/__init__.py), so rate() works before the
    # first request of a kind arrives.
    fam = families(EngineMetrics("m"))["vllm:request_success"]
    reasons = {s.labels["finished_reason"]: s.value for s in fam.samples}
    assert reasons == {"stop": 0, "length": 0, "abort": 0, "error": 0, "repetition": 0}


def test_bucket_boundaries_are_vllms() -> None:
    fams = families(EngineMetrics("m"))
    for name, (kind, _, bounds) in EXPECTED.items():
        if kind != "histogram":
            continue
        le = [s.labels["le"] for s in fams[name].samples if s.name == name + "_bucket"]
        assert le[-1] == "+Inf", name
        assert [float(x) for x in le[:-1]] == [float(b) for b in bounds], name


def test_token_buckets_follow_max_model_len() -> None:
    assert build_1_2_5_buckets(100) == (1, 2, 5, 10, 20, 50, 100)  # vLLM's own doctest
    assert list(build_1_2_5_buckets(131072)) == VLLM_TOKENS_131072
    bounds = buckets(EngineMetrics("m", max_model_len=4096), "vllm:request_prompt_tokens")
    assert list(bounds)[:-1] == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


def test_step_counts_tokens_and_adds_itl_count_times_to_one_bucket() -> None:
    m = EngineMetrics("m")
    m.step(prompt_tokens=100, generation_tokens=4, itl_s=0.03, itl_count=3)
    assert sample(m, "vllm:prompt_tokens_total") == 100
    assert sample(m, "vllm:generation_tokens_total") == 4
    itl = buckets(m, "vllm:inter_token_latency_seconds")
    assert itl[0.025] == 0 and itl[0.05] == 3 and itl[80.0] == 3 and itl[math.inf] == 3
    assert sample(m, "vllm:inter_token_latency_seconds_count") == 3
    assert sample(m, "vllm:inter_token_latency_seconds_sum") == pytest.approx(0.09)
    it = buckets(m, "vllm:iteration_tokens_total")
    assert it[64] == 0 and it[128] == 1 and it[math.inf] == 1
    assert sample(m, "vllm:iteration_tokens_total_sum") == 104

    m.step(prompt_tokens=0, generation_tokens=2, itl_s=0.2, itl_count=2)
    itl = buckets(m, "vllm:inter_token_latency_seconds")
    assert itl[0.05] == 3 and itl[0.15] == 3 and itl[0.2] == 5  # le is inclusive: 0.2 lands in le="0.2"
    assert sample(m, "vllm:generation_tokens_total") == 6
    assert buckets(m, "vllm:iteration_tokens_total")[8] == 1


def test_idle_step_is_not_an_iteration() -> None:
    m = EngineMetrics("m")
    m.step(0, 0, 0.0, 0)
    assert sample(m, "vllm:iteration_tokens_total_count") == 0
    assert sample(m, "vllm:inter_token_latency_seconds_count") == 0


def test_negative_counts_are_rejected() -> None:
    m = EngineMetrics("m")
    with pytest.raises(ValueError):
        m.step(-1, 0, 0.0, 0)
    with pytest.raises(ValueError):
        m.preempted(-2)


def test_preemptions_accumulate() -> None:
    m = EngineMetrics("m")
    m.preempted()
    m.preempted(3)
    assert sample(m, "vllm:num_preemptions_total") == 4


def test_finished_fills_every_per_request_histogram() -> None:
    m = EngineMetrics("m")
    m.finished(reason="length", prompt_tokens=300, generation_tokens=11, max_tokens=11, queue_s=0.1,
               ttft_s=0.4, e2e_s=2.5, prefill_s=0.25, decode_s=2.0)
    assert sample(m, "vllm:request_success_total", finished_reason="length") == 1
    assert sample(m, "vllm:request_success_total", finished_reason="stop") == 0
    expected_sums = {
        "vllm:time_to_first_token_seconds": 0.4,
        "vllm:e2e_request_latency_seconds": 2.5,
        "vllm:request_queue_time_seconds": 0.1,
        "vllm:request_prefill_time_seconds": 0.25,
        "vllm:request_decode_time_seconds": 2.0,
        "vllm:request_inference_time_seconds": 2.25,  # prefill + decode, as vLLM's stats.py
        "vllm:request_time_per_output_token_seconds": 0.2,  # decode / (11 - 1)
        "vllm:request_prompt_tokens": 300,
        "vllm:request_generation_tokens": 11,
        "vllm:request_params_max_tokens": 11,
    }
    for name, total in expected_sums.items():
        assert sample(m, name + "_count") == 1, name
        assert sample(m, name + "_sum") == pytest.approx(total), name
    prompt = buckets(m, "vllm:request_prompt_tokens")
    assert prompt[200] == 0 and prompt[500] == 1
    tpot = buckets(m, "vllm:request_time_per_output_token_seconds")
    assert tpot[0.15] == 0 and tpot[0.2] == 1
    e2e = buckets(m, "vllm:e2e_request_latency_seconds")
    assert e2e[2.0] == 0 and e2e[2.5] == 1


def test_short_requests_follow_vllms_edge_cases() -> None:
    m = EngineMetrics("m")
    # One token: TPOT is observed as 0, as vLLM's update_from_finished_request does.
    m.finished(reason="stop", prompt_tokens=5, generation_tokens=1, max_tokens=None, queue_s=0.0, ttft_s=0.05,
               e2e_s=0.05, prefill_s=0.05, decode_s=0.0)
    # No token at all: no first token, so no TTFT observation; max_tokens=None is not observed either.
    m.finished(reason="abort", prompt_tokens=5, generation_tokens=0, max_tokens=None, queue_s=3.0, ttft_s=0.0,
               e2e_s=3.0, prefill_s=0.0, decode_s=0.0)
    assert sample(m, "vllm:request_time_per_output_token_seconds_count") == 2
    assert sample(m, "vllm:request_time_per_output_token_seconds_sum") == 0
    assert sample(m, "vllm:time_to_first_token_seconds_count") == 1
    assert sample(m, "vllm:request_params_max_tokens_count") == 0
    assert sample(m, "vllm:request_success_total", finished_reason="abort") == 1


def test_unknown_finish_reason_is_rejected() -> None:
    with pytest.raises(ValueError, match="finished_reason"):
        EngineMetrics("m").finished(reason="timeout", prompt_tokens=1, generation_tokens=1, max_tokens=1,
                                    queue_s=0, ttft_s=0, e2e_s=0, prefill_s=0, decode_s=0)


def test_gauges_are_read_from_the_callback_at_scrape_time() -> None:
    state = {"running": 7, "waiting": 2, "kv": 0.625}
    m = EngineMetrics("m", gauges=lambda: (state["running"], state["waiting"], state["kv"]))
    assert sample(m, "vllm:num_requests_running") == 7
    assert sample(m, "vllm:num_requests_waiting") == 2
    assert sample(m, "vllm:kv_cache_usage_perc") == 0.625
    assert sample(m, "vllm:num_requests_waiting_by_reason", reason="capacity") == 2
    assert sample(m, "vllm:num_requests_waiting_by_reason", reason="deferred") == 0
    state.update(running=1, waiting=0, kv=0.125)
    assert sample(m, "vllm:num_requests_running") == 1
    assert sample(m, "vllm:kv_cache_usage_perc") == 0.125


def test_gauges_read_zero_without_a_callback() -> None:
    m = EngineMetrics("m")
    assert sample(m, "vllm:num_requests_running") == 0
    assert sample(m, "vllm:kv_cache_usage_perc") == 0


def test_two_engines_in_one_process_keep_separate_counts() -> None:
    a = EngineMetrics("model-a", engine="0")
    b = EngineMetrics("model-b", engine="1")
    assert a.registry is not b.registry
    a.step(50, 5, 0.02, 4)
    a.preempted()
    a.finished(reason="stop", prompt_tokens=50, generation_tokens=5, max_tokens=16, queue_s=0.1, ttft_s=0.2,
               e2e_s=0.5, prefill_s=0.1, decode_s=0.3)
    assert sample(a, "vllm:prompt_tokens_total") == 50
    assert sample(b, "vllm:prompt_tokens_total") == 0
    assert sample(b, "vllm:num_preemptions_total") == 0
    assert sample(b, "vllm:inter_token_latency_seconds_count") == 0
    assert sample(b, "vllm:e2e_request_latency_seconds_count") == 0
    assert sample(b, "vllm:request_success_total", finished_reason="stop") == 0
    assert "model-a" not in b.render().decode()


def test_text_matches_native_prometheus_client_metrics() -> None:
    """The custom collector prints what prometheus_client's own Counter/Histogram would print."""
    m = EngineMetrics("m", engine="0")
    native = CollectorRegistry()
    labels = ("model_name", "engine")
    itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                    labels, buckets=VLLM_ITL, registry=native).labels("m", "0")
    tokens = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", labels,
                       buckets=VLLM_TOKENS_131072, registry=native).labels("m", "0")
    prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels,
                     registry=native).labels("m", "0")
    # Values exactly representable in binary, so n additions and one multiplication give the same sum.
    for itl_s, count in ((0.25, 3), (0.0625, 2), (100.0, 1)):
        m.step(prompt_tokens=8, generation_tokens=count, itl_s=itl_s, itl_count=count)
        prompt.inc(8)
        for _ in range(count):
            itl.observe(itl_s)
    m.finished(reason="stop", prompt_tokens=2000, generation_tokens=3, max_tokens=None, queue_s=0.0,
               ttft_s=0.5, e2e_s=1.0, prefill_s=0.5, decode_s=0.5)
    tokens.observe(2000)

    def lines(text: str, name: str) -> list[str]:
        return [ln for ln in text.splitlines() if name in ln and "_created" not in ln]

    ours, theirs = m.render().decode(), generate_latest(native).decode()
    names = ("vllm:inter_token_latency_seconds", "vllm:request_prompt_tokens", "vllm:prompt_tokens_total")
    for name in names:
        assert lines(ours, name) and lines(ours, name) == lines(theirs, name), name


def test_snapshot_reports_the_same_numbers_as_the_page() -> None:
    m = EngineMetrics("m", gauges=lambda: (3, 1, 0.5))
    m.step(10, 2, 0.03, 2)
    m.finished(reason="stop", prompt_tokens=10, generation_tokens=2, max_tokens=4, queue_s=0.0, ttft_s=0.1,
               e2e_s=0.2, prefill_s=0.1, decode_s=0.1)
    snap = m.snapshot()
    assert snap["gauges"] == {"vllm:num_requests_running": 3, "vllm:num_requests_waiting": 1,
                              "vllm:kv_cache_usage_perc": 0.5}
    assert snap["counters"]["vllm:prompt_tokens_total"] == 10
    assert snap["counters"]["vllm:generation_tokens_total"] == 2
    assert snap["request_success_total"]["stop"] == 1
    itl = snap["histograms"]["vllm:inter_token_latency_seconds"]
    assert itl["count"] == 2 and itl["buckets"]["0.025"] == 0 and itl["buckets"]["0.05"] == 2
    assert itl["buckets"]["+Inf"] == 2
    assert itl["sum"] == pytest.approx(sample(m, "vllm:inter_token_latency_seconds_sum"))
