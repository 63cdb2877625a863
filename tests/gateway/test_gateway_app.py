"""The gateway in front of real emulated workers: OpenAI compatibility, cache, single-flight, budgets,
priorities, errors, metering."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from fleetwise.emulate import EmulatorConfig, WorkerThread
from fleetwise.gateway.app import Gateway, create_app
from fleetwise.gateway.config import GatewayFile
from tests.apps import AppServer

SCALE = 50.0  # emulated seconds per wall second: answers in milliseconds


@pytest.fixture(scope="module")
def workers():
    with WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=SCALE), n=2) as w:
        yield w


def gateway(workers, **extra) -> Gateway:
    data = {"backends": {"llama-3.1-8b": workers.urls},
            "prices_usd_per_1m_tokens": {"llama-3.1-8b": {"input": 1.0, "output": 2.0}}} | extra
    return Gateway.build(GatewayFile.model_validate(data))


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text (summed over label sets matching ``labels``)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def chat(content: str = "hello there", **kw) -> dict:
    return {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": content}], "max_tokens": 8} | kw


def test_openai_client_streams_and_not(workers):
    from openai import OpenAI

    with AppServer(create_app(gateway(workers))) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="none")
        answer = client.chat.completions.create(**chat())
        assert answer.usage.completion_tokens == 8 and answer.choices[0].message.content
        chunks = list(client.chat.completions.create(**chat(), stream=True))
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 8
        assert all(c.choices for c in chunks)  # the usage chunk the client did not ask for is dropped
        done = client.completions.create(model="llama-3.1-8b", prompt="once upon a time", max_tokens=5)
        assert done.usage.completion_tokens == 5
        assert [m.id for m in client.models.list().data] == ["llama-3.1-8b"]


def test_deterministic_requests_are_cached_and_replayed_as_a_stream(workers):
    gw = gateway(workers)
    with AppServer(create_app(gw)) as server:
        first = httpx.post(server.url + "/v1/chat/completions", json=chat(temperature=0), timeout=30).json()
        again = httpx.post(server.url + "/v1/chat/completions", json=chat(temperature=0), timeout=30).json()
        assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
        with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=30,
                          json=chat(temperature=0, stream=True, stream_options={"include_usage": True})) as r:
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 8
        assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2]
                       if json.loads(e)["choices"]) == first["choices"][0]["message"]["content"]
        # no-cache goes upstream; a sampled request is never cached
        httpx.post(server.url + "/v1/chat/completions", json=chat(temperature=0, cache={"no-cache": True}))
        httpx.post(server.url + "/v1/chat/completions", json=chat(temperature=0.7))
        metrics = httpx.get(server.url + "/metrics").text
    assert metric(metrics, "fleetwise_gateway_cache_hits_total") == 2


def test_identical_requests_in_flight_share_one_upstream_call(workers):
    gw = gateway(workers)
    body = chat("tell me a long story", temperature=0, max_tokens=200, stream=True)

    async def run(url: str) -> list[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            async def one() -> str:
                async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    events = [json.loads(line[6:]) async for line in r.aiter_lines()
                              if line.startswith("data: ") and line != "data: [DONE]"]
                return "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
            return await asyncio.gather(*(one() for _ in range(5)))

    with AppServer(create_app(gw)) as server:
        answers = asyncio.run(run(server.url))
        metrics = httpx.get(server.url + "/metrics").text
    assert len(set(answers)) == 1 and len(answers[0]) > 200  # every waiter got the whole answer
    joined = metric(metrics, "fleetwise_gateway_dedup_joined_total")
    assert joined >= 3  # the five arrive within milliseconds of a 200-token answer


def test_budget_caps_concurrent_requests_atomically(workers):
    # worst case per request: 10 prompt tokens x $1/1M + 100 output x $2/1M = $0.00021, and with ignore_eos the
    # actual cost is the worst case: a budget for 20 admits exactly 20 whatever finishes first
    worst = (10 * 1.0 + 100 * 2.0) / 1e6
    tenants = [{"name": "acme", "api_keys": ["sk-acme-0001"], "budget_usd_per_day": worst * 20 + 1e-9}]
    gw = gateway(workers, tenants=tenants)
    body = {"model": "llama-3.1-8b", "prompt": "x" * 40, "max_tokens": 100, "temperature": 0.5,
            "ignore_eos": True}

    async def run(url: str):
        async with httpx.AsyncClient(timeout=30, headers={"authorization": "Bearer sk-acme-0001"}) as client:
            return await asyncio.gather(*(client.post(url + "/v1/completions", json=body) for _ in range(60)))

    with AppServer(create_app(gw)) as server:
        answers = asyncio.run(run(server.url))
        bad_key = httpx.post(server.url + "/v1/completions", json=body, headers={"authorization": "Bearer nope"})
        no_key = httpx.post(server.url + "/v1/completions", json=body)
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) == 20 and len(ok) + len(refused) == 60
    assert refused[0].json()["error"]["code"] == "insufficient_quota"
    assert "left of" in refused[0].json()["error"]["message"]
    assert bad_key.status_code == 401 and no_key.status_code == 401
    assert bad_key.json()["error"]["code"] == "invalid_api_key"


def test_bad_requests_get_openai_errors_and_the_gateway_keeps_serving(workers):
    gw = gateway(workers, max_body_bytes=4096)
    with AppServer(create_app(gw)) as server:
        post = lambda body, **kw: httpx.post(server.url + "/v1/chat/completions", content=body, **kw)
        cases = {
            b"{not json": 400, b"[1, 2]": 400, json.dumps({"messages": []}).encode(): 400,
            json.dumps(chat(max_tokens=-3)).encode(): 400, json.dumps(chat(model="gpt-9")).encode(): 404,
            json.dumps(chat(priority="vip")).encode(): 400, b"x" * 10_000: 413,
        }
        for body, status in cases.items():
            r = post(body)
            assert r.status_code == status, (body[:40], r.text)
            assert set(r.json()["error"]) >= {"message", "type", "code"}
        assert httpx.post(server.url + "/v1/chat/completions", json=chat()).status_code == 200


def test_saturated_model_sheds_batch_first_never_interactive(workers):
    gw = gateway(workers, saturation={"tokens_per_backend": 1})
    for b in gw.backends.pool("llama-3.1-8b").backends.values():
        b.outstanding = 10  # as if both were full
    with AppServer(create_app(gw)) as server:
        batch = httpx.post(server.url + "/v1/chat/completions", json=chat(priority="batch"))
        interactive = httpx.post(server.url + "/v1/chat/completions", json=chat(priority="interactive"))
        header = httpx.post(server.url + "/v1/chat/completions", json=chat(), headers={"x-priority": "background"})
    assert batch.status_code == 429 and batch.headers["retry-after"] == "1"
    assert header.status_code == 429
    assert interactive.status_code == 200


def test_a_backend_queueing_in_its_own_metrics_is_saturated_though_the_gateway_sent_it_nothing():
    """Admission reads the engine's /metrics: requests queued by other clients count, not only the gateway's."""
    cfg = EmulatorConfig(model="llama-3.1-8b", time_scale=5.0, max_num_seqs=1)
    with WorkerThread(cfg, n=1) as busy:
        gw = Gateway.build(GatewayFile.model_validate({
            "backends": {"llama-3.1-8b": busy.urls},
            "saturation": {"max_waiting": 3, "scrape_interval_s": 0.2}}))  # stale after 0.6 s: loaded CI
        with AppServer(create_app(gw)) as server:
            url = server.url + "/v1/chat/completions"
            assert httpx.post(url, json=chat(priority="batch")).status_code == 200  # idle: admitted

            long = chat(max_tokens=400, min_tokens=400, ignore_eos=True)

            async def flood():  # 6 requests of exactly 400 tokens straight to the engine: 1 runs, 5 wait
                async with httpx.AsyncClient(timeout=60) as client:
                    return await asyncio.gather(*(client.post(busy.urls[0] + "/v1/chat/completions", json=long)
                                                  for _ in range(6)), return_exceptions=True)

            loop = asyncio.new_event_loop()
            flooding = threading.Thread(target=lambda: loop.run_until_complete(flood()), daemon=True)
            flooding.start()
            pool = gw.backends.pool("llama-3.1-8b")
            deadline = time.monotonic() + 20  # a batch request sent before the queue shows would wait behind it
            while (next(iter(pool.backends.values())).waiting or 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            shed = httpx.post(url, json=chat(priority="batch"))
            assert shed.status_code == 429 and "saturated" in shed.json()["error"]["message"]
            assert all(b.outstanding == 0 for b in pool.backends.values())  # the gateway's count alone: room
            assert next(iter(pool.backends.values())).waiting >= 3
            flooding.join(60)
            time.sleep(0.5)  # the queue drained: the next reading admits batch work again
            assert httpx.post(url, json=chat(priority="batch")).status_code == 200


def test_saturation_readings_go_stale_and_sglang_names_read_the_same():
    from fleetwise.enginemetrics import load_gauges
    from fleetwise.gateway.backends import Backend, Saturation

    sglang = ("# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs{model_name=\"m\"} 7\n"
              "# TYPE sglang:token_usage gauge\nsglang:token_usage{model_name=\"m\"} 0.5\n")
    vllm_v0 = ("# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{engine=\"0\"} 0.9\n"
               "vllm:gpu_cache_usage_perc{engine=\"1\"} 0.7\n")
    assert load_gauges(sglang) == {"waiting": 7.0, "kv_usage": 0.5}
    assert load_gauges(vllm_v0) == pytest.approx({"kv_usage": 0.8})  # averaged over engines
    limits = Saturation(tokens=100, max_waiting=5, max_kv_usage=0.8, scrape_interval_s=1.0)
    b = Backend("http://x", waiting=7.0, kv_usage=0.1, scraped_at=10.0)
    assert b.saturated(limits, now=12.0)  # fresh: 7 waiting >= 5
    assert not b.saturated(limits, now=13.5)  # older than 3 intervals: no longer counts
    assert Backend("http://x", waiting=0.0, kv_usage=0.85, scraped_at=10.0).saturated(limits, now=10.5)
    assert Backend("http://x", outstanding=100).saturated(limits, now=0.0)  # no metrics: its own count


def test_an_unreachable_backend_is_a_clear_error_not_a_hang():
    gw = Gateway.build(GatewayFile.model_validate({"backends": {"m": ["http://127.0.0.1:9"]}}))
    with AppServer(create_app(gw)) as server:
        r = httpx.post(server.url + "/v1/completions", json={"model": "m", "prompt": "hi"}, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"


def test_a_backend_that_refuses_unanswered_is_routed_around_for_any_prompt(workers):
    """A worker stopped before the controller's list caught up (connection refused), or one turning requests
    away with 503: nothing was generated, so even a token-id prompt goes to the next backend - and the one
    that refused is not picked again while it is ejected (least-outstanding would pick it every time)."""
    from fleetwise.replay.instant import InstantConfig, serve_in_thread
    from tests.replay.test_client import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with serve_in_thread(InstantConfig(fault=lambda n, b: "http_503")) as busy:
        gw = Gateway.build(GatewayFile.model_validate({"backends": {"llama-3.1-8b": [dead, busy.url,
                                                                                     workers.urls[0]]}}))
        gw.backends.pool("llama-3.1-8b").backends[workers.urls[0]].outstanding = 10**6  # tried last
        with AppServer(create_app(gw)) as server:
            answers = [httpx.post(server.url + "/v1/completions", timeout=30,
                                  json={"model": "llama-3.1-8b", "prompt": [1, 2, 3], "max_tokens": 4})
                       for _ in range(6)]
            answers.append(httpx.post(server.url + "/v1/chat/completions", json=chat(stream=True), timeout=30))
            metrics = httpx.get(server.url + "/metrics").text
    assert [a.status_code for a in answers] == [200] * 7
    assert metric(metrics, "fleetwise_gateway_rerouted_total") == 2  # each refused once, then ejected


def test_backends_follow_a_controller_and_skip_draining_workers(workers):
    from fastapi import FastAPI

    ctl = FastAPI()

    @ctl.get("/api/backends")
    async def backends():
        return {"model": "llama-3.1-8b", "backends": [{"url": workers.urls[0]}],
                "draining": [{"url": workers.urls[1]}]}

    with AppServer(ctl) as controller:
        gw = Gateway.build(GatewayFile.model_validate({"controller": controller.url}))
        with AppServer(create_app(gw)) as server:
            deadline = time.monotonic() + 10
            while not gw.backends.models() and time.monotonic() < deadline:
                time.sleep(0.05)
            answers = [httpx.post(server.url + "/v1/chat/completions", json=chat()) for _ in range(4)]
    pool = gw.backends.pool("llama-3.1-8b")
    assert all(a.status_code == 200 for a in answers)
    assert pool.backends[workers.urls[1]].draining and not pool.backends[workers.urls[0]].draining


@pytest.mark.parametrize("prompt", ["chat", "token_ids"])
def test_a_stream_whose_backend_is_reclaimed_resumes_on_another(prompt):
    """Chat resumes from the text so far; a prompt of token ids from the generated ids, which the gateway
    asks the backend for (``return_token_ids``) and keeps out of the client's stream (it did not ask)."""
    with WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=1.0), n=2) as pair:
        gw = Gateway.build(GatewayFile.model_validate({"backends": {"llama-3.1-8b": pair.urls}}))
        common = {"max_tokens": 300, "min_tokens": 300, "ignore_eos": True, "stream": True,
                  "stream_options": {"include_usage": True}}
        if prompt == "chat":
            path, body = "/v1/chat/completions", chat("write a long answer", **common)
        else:
            path, body = "/v1/completions", {"model": "llama-3.1-8b", "prompt": list(range(100, 150))} | common
        with AppServer(create_app(gw)) as server:
            first = gw.backends.pool("llama-3.1-8b").pick().url

            def reclaim() -> None:
                time.sleep(0.4)
                httpx.post(first + "/admin/interrupt", json={"notice_s": 0.1})

            threading.Thread(target=reclaim, daemon=True).start()
            with httpx.stream("POST", server.url + path, json=body, timeout=60) as r:
                events = [json.loads(line[6:]) for line in r.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            metrics = httpx.get(server.url + "/metrics").text
            other = next(u for u in pair.urls if u != first)
            resumed_prompt = metric(httpx.get(other + "/metrics").text, "vllm:request_prompt_tokens_sum")
    pieces = [(c["delta"].get("content") if prompt == "chat" else c.get("text"))
              for e in events for c in e.get("choices") or ()]
    assert not [e for e in events if "error" in e]
    assert metric(metrics, "fleetwise_gateway_resumed_total") == 1
    assert sum(1 for p in pieces if p) >= 300  # the client's stream went on to the end on the other worker
    assert not [e for e in events if "token_ids" in json.dumps(e)]  # ids the client did not ask for stay out
    usage = events[-1]["usage"]  # the whole answer's: every attempt's output, the prompt as the client sent it
    assert usage["completion_tokens"] == 300
    assert resumed_prompt > usage["prompt_tokens"] + 10  # the other worker got the prompt + the output so far
    if prompt == "token_ids":
        assert usage["prompt_tokens"] == 50


def test_a_token_id_prompt_is_not_resumed_when_the_backend_gives_no_ids():
    """A backend that ignores ``return_token_ids`` (vLLM < 0.10.2): the stream ends with an error event."""
    from fleetwise.gateway.app import Call, Outcome, _resumable

    call = Call(False, {"prompt": [1, 2, 3]}, "m", True, False, 3, 10, "interactive", False, False, None)
    assert not _resumable(call, Outcome(completion_tokens=4))
    assert _resumable(call, Outcome(completion_tokens=4, token_ids=[7, 7, 7, 7]))
    assert _resumable(call, Outcome())  # nothing generated yet: send it again


def test_a_backend_that_refuses_return_token_ids_is_sent_requests_without_it():
    """A strict OpenAI-compatible server (not vLLM >= 0.10.2) may answer 400 to the field the gateway adds to
    token-id prompts: the request goes again without it, and that backend is never sent it again."""
    from fleetwise.replay.instant import InstantConfig, serve_in_thread

    seen: list[bool] = []

    def strict(n, body):
        seen.append("return_token_ids" in body)
        return "http_400" if "return_token_ids" in body else None

    with serve_in_thread(InstantConfig(fault=strict)) as backend:
        gw = Gateway.build(GatewayFile.model_validate({"backends": {"m": [backend.url]}}))
        with AppServer(create_app(gw)) as server:
            answers = [httpx.post(server.url + "/v1/completions", json={"model": "m", "prompt": [1, 2, 3],
                                                                         "max_tokens": 4}) for _ in range(2)]
            asked = httpx.post(server.url + "/v1/completions",  # the client's own field is its to keep
                               json={"model": "m", "prompt": [1, 2], "max_tokens": 4, "return_token_ids": True})
    assert [a.status_code for a in answers] == [200, 200] and answers[0].json()["usage"]["completion_tokens"] == 4
    assert seen == [True, False, False, True] and asked.status_code == 400


def test_a_400_for_another_reason_does_not_stop_asking_a_backend_for_token_ids():
    from fleetwise.replay.instant import InstantConfig, serve_in_thread

    seen: list[bool] = []

    def too_long(n, body):
        seen.append("return_token_ids" in body)
        return "http_400" if body.get("max_tokens") == 999 else None

    with serve_in_thread(InstantConfig(fault=too_long)) as backend:
        gw = Gateway.build(GatewayFile.model_validate({"backends": {"m": [backend.url]}}))
        with AppServer(create_app(gw)) as server:
            bad = httpx.post(server.url + "/v1/completions", json={"model": "m", "prompt": [1], "max_tokens": 999})
            good = httpx.post(server.url + "/v1/completions", json={"model": "m", "prompt": [1], "max_tokens": 3})
    assert bad.status_code == 400 and good.status_code == 200
    assert seen == [True, False, True]  # tried once without the field, which was not the cause
    assert gw.backends.pool("m").backends[backend.url].token_ids


def test_a_hanging_backend_hits_the_timeout_and_a_slow_client_blocks_nobody():
    from fleetwise.replay.instant import InstantConfig, serve_in_thread

    hang_first = InstantConfig(fault=lambda n, body: "hang" if body.get("max_tokens") == 7 else None)
    with serve_in_thread(hang_first) as backend:
        gw = Gateway.build(GatewayFile.model_validate({"backends": {"m": [backend.url]}, "upstream_timeout_s": 1.0}))
        with AppServer(create_app(gw)) as server:
            body = {"model": "m", "prompt": "hi", "max_tokens": 7}
            t0 = time.monotonic()
            hung = httpx.post(server.url + "/v1/completions", json=body, timeout=30)
            assert hung.status_code == 504 and time.monotonic() - t0 < 5
            assert hung.json()["error"]["code"] == "upstream_error"
            # a client that opens a long stream and never reads it does not hold up anyone else
            slow = httpx.Client(timeout=30)
            with slow.stream("POST", server.url + "/v1/completions",
                             json={"model": "m", "prompt": "x", "max_tokens": 4000, "stream": True}):
                t0 = time.monotonic()
                fast = httpx.post(server.url + "/v1/completions", json={"model": "m", "prompt": "y", "max_tokens": 3})
                assert fast.status_code == 200 and time.monotonic() - t0 < 2
            slow.close()
