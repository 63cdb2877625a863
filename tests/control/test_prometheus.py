"""PrometheusSource: the PromQL answer -> WorkerMetrics mapping on canned answers, then end to end against a
real Prometheus scraping emulated workers."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fleetwise.control.prometheus import TIME_SERIES, PrometheusSource, build_query, worker_address
from fleetwise.control.types import Worker
from fleetwise.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared services helper
from services import require

NOW = 1_800_000_000.0
A = Worker("a", "aws:p5.4xlarge", "spot", "serving", "http://10.0.0.1:8000")
B = Worker("b", "aws:p5.4xlarge", "on_demand", "serving", "http://10.0.0.2:8000/")


def item(name: str, instance: str, value, **labels) -> dict:
    """One element of an instant vector, as Prometheus's API writes it."""
    return {"metric": {"__name__": name, "instance": instance, "job": "workers", **labels},
            "value": [NOW + 0.5, str(value)]}


def answer(result: list, status: int = 200) -> httpx.Response:
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return httpx.Response(status, json=body)


def source(handler, **options) -> PrometheusSource:
    options.setdefault("clock", lambda: NOW)
    return PrometheusSource("http://prom:9090", transport=httpx.MockTransport(handler), **options)


def sample(src: PrometheusSource, *workers: Worker) -> dict:
    return asyncio.run(src.sample(workers))


def histogram(name: str, instance: str, buckets: dict[str, float], total: float, **labels) -> list[dict]:
    rows = [item(f"{name}_bucket", instance, v, le=le, **labels) for le, v in buckets.items()]
    return [*rows, item(f"{name}_sum", instance, total, **labels),
            item(f"{name}_count", instance, buckets["+Inf"], **labels)]


VLLM = "10.0.0.1:8000"
SGLANG = "10.0.0.2:8000"
CANNED = [
    item(TIME_SERIES, VLLM, NOW - 3),
    item(TIME_SERIES, SGLANG, NOW - 1),
    # vLLM V1, two engines (data parallel): summed over engine and finished_reason
    item("vllm:request_success_total", VLLM, 7, engine="0", finished_reason="stop"),
    item("vllm:request_success_total", VLLM, 2, engine="0", finished_reason="length"),
    item("vllm:request_success_total", VLLM, 1, engine="1", finished_reason="stop"),
    item("vllm:prompt_tokens_total", VLLM, 1000, engine="0"),
    item("vllm:prompt_tokens_total", VLLM, 500, engine="1"),
    item("vllm:generation_tokens_total", VLLM, 300, engine="0"),
    item("vllm:num_requests_running", VLLM, 3, engine="0"),
    item("vllm:num_requests_running", VLLM, 4, engine="1"),
    item("vllm:num_requests_waiting", VLLM, 0, engine="0"),
    item("vllm:num_requests_waiting", VLLM, 5, engine="1"),
    # during vLLM's deprecation period both names are exported: the current one wins, nothing is summed twice
    item("vllm:kv_cache_usage_perc", VLLM, 0.2, engine="0"),
    item("vllm:kv_cache_usage_perc", VLLM, 0.4, engine="1"),
    item("vllm:gpu_cache_usage_perc", VLLM, 0.9, engine="0"),
    *histogram("vllm:time_to_first_token_seconds", VLLM, {"0.5": 4, "+Inf": 6, "0.1": 1}, 3.0, engine="0"),
    *histogram("vllm:time_to_first_token_seconds", VLLM, {"0.1": 2, "0.5": 3, "+Inf": 4}, 1.0, engine="1"),
    # vLLM V0's name for the inter-token latency
    *histogram("vllm:time_per_output_token_seconds", VLLM, {"0.05": 90, "+Inf": 100}, 4.0),
    # SGLang
    item("sglang:num_requests_total", SGLANG, 11),
    item("sglang:prompt_tokens_total", SGLANG, 2200),
    item("sglang:generation_tokens_total", SGLANG, 440),
    item("sglang:num_running_reqs", SGLANG, 8),
    item("sglang:num_queue_reqs", SGLANG, 2),
    item("sglang:token_usage", SGLANG, 0.75),
    *histogram("sglang:time_to_first_token_seconds", SGLANG, {"0.1": 5, "+Inf": 11}, 2.5),
    *histogram("sglang:inter_token_latency_seconds", SGLANG, {"0.02": 400, "+Inf": 429}, 8.0),
    # another target's series, and an unrelated name: ignored
    item("vllm:request_success_total", "10.0.0.9:8000", 99, finished_reason="stop"),
    item("vllm:num_preemptions_total", VLLM, 5),
]


def test_canned_answer_maps_vllm_and_sglang_names():
    got = sample(source(lambda request: answer(CANNED)), A, B)
    a, b = got["a"], got["b"]
    assert a.t == NOW - 3 and b.t == NOW - 1
    assert (a.finished, a.prompt_tokens, a.generation_tokens) == (10, 1500, 300)
    assert (a.running, a.waiting) == (7, 5)
    assert a.kv_usage == pytest.approx(0.3)  # mean over engines; the deprecated 0.9 is not used
    assert a.ttft.bounds == (0.1, 0.5, math.inf)
    assert a.ttft.counts == (3, 7, 10) and a.ttft.total == 4.0
    assert a.itl.bounds == (0.05, math.inf) and a.itl.counts == (90, 100)
    assert (b.finished, b.prompt_tokens, b.generation_tokens, b.running, b.waiting) == (11, 2200, 440, 8, 2)
    assert b.kv_usage == 0.75
    assert b.ttft.counts == (5, 11) and b.itl.count == 429 and b.itl.total == 8.0
    assert a.complete and b.complete


def test_query_asks_for_the_workers_only():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer([])

    src = PrometheusSource("https://example.org/prom/", transport=httpx.MockTransport(handler))
    assert sample(src, A, B, Worker("c", "p", "spot", "pending")) == {}
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/prom/api/v1/query"
    query = request.url.params["query"]
    assert query == build_query("instance", ["10.0.0.1:8000", "10.0.0.2:8000"])
    assert r'instance=~"10\\.0\\.0\\.1:8000|10\\.0\\.0\\.2:8000"' in query
    assert "vllm:request_success_total" in query and "sglang:num_requests_total" in query
    assert "vllm:time_to_first_token_seconds_bucket" in query


def test_no_workers_with_addresses_sends_no_query():
    def handler(request):
        raise AssertionError("no query expected")

    assert sample(source(handler), Worker("c", "p", "spot", "pending")) == {}


def test_a_large_fleet_is_asked_with_a_post():
    methods = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return answer([])

    fleet = [Worker(f"w{i}", "p", "spot", "serving", f"http://10.1.{i // 250}.{i % 250}:8000")
             for i in range(400)]
    sample(source(handler), *fleet)
    assert methods == ["POST"]


def test_stale_and_untimed_workers_are_left_out():
    rows = [item(TIME_SERIES, VLLM, NOW - 61), item("vllm:num_requests_running", VLLM, 1),
            item("sglang:num_running_reqs", SGLANG, 2)]  # no scrape time for SGLANG
    assert sample(source(lambda r: answer(rows), max_age_s=60), A, B) == {}
    fresh = sample(source(lambda r: answer(rows), max_age_s=62), A, B)
    assert set(fresh) == {"a"} and fresh["a"].running == 1 and math.isnan(fresh["a"].finished)
    assert not fresh["a"].complete


def test_a_target_that_is_down_is_left_out():
    """Prometheus returns ``up``'s time but no samples of a target whose scrape failed (staleness markers)."""
    assert sample(source(lambda r: answer([item(TIME_SERIES, VLLM, NOW - 1)])), A) == {}


def test_histogram_without_inf_bucket_is_dropped():
    rows = [item(TIME_SERIES, VLLM, NOW), item("vllm:num_requests_running", VLLM, 1),
            item("vllm:time_to_first_token_seconds_bucket", VLLM, 3, le="0.5")]
    got = sample(source(lambda r: answer(rows)), A)
    assert got["a"].ttft is None and got["a"].running == 1


def test_workers_matched_by_id_label():
    rows = [{"metric": {"__name__": TIME_SERIES, "pod": "a"}, "value": [NOW, str(NOW)]},
            {"metric": {"__name__": "vllm:num_requests_waiting", "pod": "a"}, "value": [NOW, "4"]}]
    seen = []

    def handler(request):
        seen.append(request.url.params["query"])
        return answer(rows)

    got = sample(source(handler, label="pod", key="id"), A, Worker("b", "p", "spot", "provisioning"))
    assert got["a"].waiting == 4
    assert 'pod=~"a|b"' in seen[0] and "max by (pod)" in seen[0]


def refused(request):
    raise httpx.ConnectError("connection refused", request=request)


def timed_out(request):
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize("handler, words", [
    (refused, "ConnectError"),
    (timed_out, "ReadTimeout"),
    (lambda r: httpx.Response(503, text="<html>Service Unavailable</html>"), "HTTP 503, not JSON"),
    (lambda r: httpx.Response(422, json={"status": "error", "errorType": "execution",
                                         "error": "vector cannot contain metrics with the same labelset"}),
     "execution: vector cannot contain"),
    (lambda r: httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix",
                                                                        "result": []}}),
     "not an instant vector"),
    (lambda r: httpx.Response(200, json=[1, 2]), "unexpected JSON list"),
    (lambda r: httpx.Response(200, json={"status": "success", "data": "x"}), "not an instant vector"),
])
def test_unusable_prometheus_gives_an_empty_sample_and_one_warning(handler, words, caplog):
    src = source(handler)
    with caplog.at_level(logging.INFO, logger="fleetwise.control.prometheus"):
        assert sample(src, A) == {}
        assert sample(src, A) == {}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and words in warnings[0].getMessage()


def test_recovery_is_logged(caplog):
    answers = iter([httpx.Response(500, text="oops"), answer(CANNED)])
    src = source(lambda r: next(answers))
    with caplog.at_level(logging.INFO, logger="fleetwise.control.prometheus"):
        assert sample(src, A) == {}
        assert set(sample(src, A)) == {"a"}
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_malformed_values_are_skipped():
    rows = [item(TIME_SERIES, VLLM, NOW), item("vllm:num_requests_running", VLLM, "not a number"),
            {"metric": {"__name__": "vllm:num_requests_waiting", "instance": VLLM}}]
    assert sample(source(lambda r: answer(rows)), A) == {}


@pytest.mark.parametrize("url, options", [
    ("prometheus:9090", {}), ("ftp://prom:9090", {}), ("http://", {}), ("http://prom:port", {}),
    ("http://prom:9090/?x=1", {}), ("http://prom:9090", {"label": "bad-label"}),
    ("http://prom:9090", {"label": "__name__"}), ("http://prom:9090", {"key": "pod"}),
    ("http://prom:9090", {"max_age_s": 0}), ("http://prom:9090", {"timeout_s": math.nan}),
])
def test_bad_options_are_config_errors(url, options):
    with pytest.raises(ConfigError):
        PrometheusSource(url, **options)


def test_worker_address_is_prometheus_instance():
    assert worker_address("http://127.0.0.1:8001/") == "127.0.0.1:8001"
    assert worker_address("https://worker.example") == "worker.example:443"
    assert worker_address("http://worker") == "worker:80"
    assert worker_address("http://[::1]:8001") == "[::1]:8001"
    assert worker_address("") == ""


# --- against a real Prometheus --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An emulated worker (and a second one, stopped later) scraped every second by a real Prometheus."""
    binary = require("prometheus", "Debian/Ubuntu: apt-get install prometheus")
    from fleetwise.emulate import EmulatorConfig, WorkerThread

    tmp = tmp_path_factory.mktemp("prometheus")
    with WorkerThread(EmulatorConfig(time_scale=20.0, seed=1), n=2) as fleet:
        targets = ", ".join(f"'{worker_address(u)}'" for u in fleet.urls)
        config = tmp / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                          f"  - job_name: workers\n    static_configs:\n      - targets: [{targets}]\n")
        port = free_port()
        log = (tmp / "prometheus.log").open("w")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _ready(url), 15, f"Prometheus did not get ready; log: {tmp / 'prometheus.log'}")
            yield url, fleet
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, timeout_s: float, message: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.2)


def direct(url: str) -> dict:
    """Counters and histogram counts read straight from a worker's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=5).text):
        for s in family.samples:
            key = s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else "")
            out[key] = out.get(key, 0.0) + s.value
    return out


def test_real_prometheus_matches_the_workers_own_metrics(stack):
    url, fleet = stack
    workers = [Worker(f"w{i}", "local", "spot", "serving", u) for i, u in enumerate(fleet.urls)]
    with httpx.Client(timeout=30) as client:
        for n, worker in enumerate(workers):
            for k in range(2 + n):
                r = client.post(worker.url + "/v1/completions",
                                json={"model": "llama-3.1-8b", "prompt": f"hello {k}", "max_tokens": 4 + k})
                assert r.status_code == 200, r.text
    want = {w.id: direct(w.url) for w in workers}
    src = PrometheusSource(url, max_age_s=30)

    def caught_up():
        got = asyncio.run(src.sample(workers))
        ok = all(w.id in got and got[w.id].ttft is not None
                 and got[w.id].ttft.count == want[w.id]["vllm:time_to_first_token_seconds_count"]
                 and got[w.id].finished == want[w.id]["vllm:request_success_total"] for w in workers)
        return got if ok else None

    got = wait_for(caught_up, 20, "Prometheus did not catch up with the workers' counters in 20 s")
    for w in workers:
        m, d = got[w.id], want[w.id]
        assert m.finished == d["vllm:request_success_total"] == 2 + int(w.id[1:])
        assert m.prompt_tokens == d["vllm:prompt_tokens_total"] > 0
        assert m.generation_tokens == d["vllm:generation_tokens_total"] > 0
        assert (m.running, m.waiting) == (d["vllm:num_requests_running"], d["vllm:num_requests_waiting"])
        assert m.kv_usage == d["vllm:kv_cache_usage_perc"]
        for hist, name in ((m.ttft, "vllm:time_to_first_token_seconds"),
                           (m.itl, "vllm:inter_token_latency_seconds")):
            assert hist.count == d[f"{name}_count"] > 0
            assert hist.total == pytest.approx(d[f"{name}_sum"])
            assert len(hist.bounds) == sum(1 for k in d if k.startswith(f"{name}_bucket"))
            assert hist.counts[:-1] == tuple(
                d[f"{name}_bucket{{le={b}}}"] for b in (format_le(x) for x in hist.bounds[:-1]))
        assert time.time() - 5 < m.t <= time.time()
    # an unknown worker is not in the answer; a clock far ahead makes every worker stale
    assert "x" not in asyncio.run(src.sample([Worker("x", "p", "spot", "serving", "http://127.0.0.1:9")]))
    late = PrometheusSource(url, max_age_s=30, clock=lambda: time.time() + 60)
    assert asyncio.run(late.sample(workers)) == {}


def format_le(bound: float) -> str:
    """prometheus_client's parser keeps ``le`` as written: Go's float format."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(bound)


def test_real_prometheus_leaves_out_a_stopped_worker(stack):
    url, fleet = stack
    workers = [Worker(f"w{i}", "local", "spot", "serving", u) for i, u in enumerate(fleet.urls)]
    src = PrometheusSource(url, max_age_s=30)
    wait_for(lambda: set(asyncio.run(src.sample(workers))) == {"w0", "w1"}, 20, "both workers never reported")
    fleet.call(lambda: setattr(fleet.fleet.servers[1], "should_exit", True))
    wait_for(lambda: set(asyncio.run(src.sample(workers))) == {"w0"}, 20,
             "a stopped worker was still reported after 20 s")
