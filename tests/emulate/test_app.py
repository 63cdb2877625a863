"""The emulated worker over real HTTP on loopback: OpenAI API (httpx and the openai client), metrics, errors,
spot notices in three clouds' formats, run-time faults, cold start."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetwise.emulate import EmulatorConfig, WorkerThread
from fleetwise.emulate.app import MAX_BODY_BYTES

SCALE = 20.0  # 20x faster than real time: a 200-token answer takes ~0.1 s


@pytest.fixture(scope="module")
def fleet():
    with WorkerThread(EmulatorConfig(time_scale=SCALE, seed=3), n=2) as f:
        yield f


@pytest.fixture()
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def sse_events(response) -> list[str]:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_models_and_health(fleet, client):
    url = fleet.urls[0]
    assert client.get(f"{url}/health").status_code == 200
    data = client.get(f"{url}/v1/models").json()
    assert data["object"] == "list" and data["data"][0]["id"] == "llama-3.1-8b"
    assert data["data"][0]["max_model_len"] == 131072


def test_completion_with_token_ids_is_exact(fleet, client):
    r = client.post(f"{fleet.urls[0]}/v1/completions", json={
        "model": "llama-3.1-8b", "prompt": list(range(777)), "max_tokens": 33, "ignore_eos": True})
    body = r.json()
    assert r.status_code == 200
    assert body["usage"] == {"prompt_tokens": 777, "completion_tokens": 33, "total_tokens": 810}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["object"] == "text_completion" and len(body["choices"][0]["text"].split()) == 33


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_return_token_ids_as_vllm_gives_them(fleet, client, path):
    """vLLM >= 0.10.2's ``return_token_ids``: each chunk's choice has its ids, the prompt's ids come once (in the
    choice for completions, at the top for chat); the ids spell the same words as the text."""
    from fleetwise.emulate.tokens import WORDS

    chat = path.endswith("chat/completions")
    body = ({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": [5, 6, 7]}) | {
        "max_tokens": 30, "ignore_eos": True, "return_token_ids": True}
    whole = client.post(fleet.urls[0] + path, json=body).json()
    choice = whole["choices"][0]
    text = choice["message"]["content"] if chat else choice["text"]
    assert "".join(WORDS[i] for i in choice["token_ids"]) == text and len(choice["token_ids"]) == 30
    assert (whole.get("prompt_token_ids") if chat else choice["prompt_token_ids"]) == (None if chat else [5, 6, 7])
    with client.stream("POST", fleet.urls[0] + path, json=body | {"stream": True}) as r:
        events = [json.loads(e) for e in sse_events(r)[:-1]]
    ids = [i for e in events for c in e["choices"] for i in c.get("token_ids") or ()]
    assert ids == choice["token_ids"]
    if not chat:
        assert events[0]["choices"][0]["prompt_token_ids"] == [5, 6, 7]
        assert not any("prompt_token_ids" in c for e in events[1:] for c in e["choices"])
    plain = client.post(fleet.urls[0] + path, json=body | {"return_token_ids": False}).json()
    assert "token_ids" not in plain["choices"][0]


def test_hugging_face_id_is_accepted(fleet, client):
    r = client.post(f"{fleet.urls[0]}/v1/completions", json={
        "model": "meta-llama/Llama-3.1-8B", "prompt": "hi", "max_tokens": 2, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def test_text_prompt_tokens_follow_the_byte_rule(fleet, client):
    r = client.post(f"{fleet.urls[0]}/v1/completions", json={"prompt": "abcd" * 50 + "x", "max_tokens": 1})
    assert r.json()["usage"]["prompt_tokens"] == 51  # ceil(201 bytes / 4)


def test_streamed_completion_one_event_per_token_then_usage_and_done(fleet, client):
    with client.stream("POST", f"{fleet.urls[1]}/v1/completions", json={
            "prompt": [1] * 100, "max_tokens": 20, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["text"]]
    assert len(texts) == 20
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 20


def test_streamed_chat_with_the_openai_client(fleet):
    import openai

    client = openai.OpenAI(base_url=f"{fleet.urls[0]}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="llama-3.1-8b", messages=[{"role": "user", "content": "Say something."}], max_tokens=12,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    parts, usage, roles = [], None, set()
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.delta.role:
                roles.add(choice.delta.role)
    assert len(parts) == 12 and roles == {"assistant"}
    assert usage.completion_tokens == 12 and usage.prompt_tokens == 3 + 3 + 4  # "Say something." = 14 bytes


def test_completion_with_the_openai_client(fleet):
    import openai

    client = openai.OpenAI(base_url=f"{fleet.urls[0]}/v1", api_key="unused", max_retries=0)
    out = client.completions.create(model="llama-3.1-8b", prompt=[5, 6, 7], max_tokens=4,
                                    extra_body={"ignore_eos": True})
    assert out.usage.prompt_tokens == 3 and out.usage.completion_tokens == 4
    chat = client.chat.completions.create(model="llama-3.1-8b", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=3, extra_body={"ignore_eos": True})
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens == 3


def test_output_length_without_ignore_eos_is_drawn_and_bounded(fleet, client):
    lengths = []
    for _ in range(30):
        r = client.post(f"{fleet.urls[0]}/v1/completions", json={"prompt": [1], "max_tokens": 300,
                                                                 "min_tokens": 20})
        body = r.json()
        n = body["usage"]["completion_tokens"]
        lengths.append(n)
        assert body["choices"][0]["finish_reason"] == ("length" if n == 300 else "stop")
    assert min(lengths) >= 20 and max(lengths) <= 300 and len(set(lengths)) > 10


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"prompt": "x", "max_tokens": -5}', 400, "max_tokens"),
    (b'{"prompt": "x", "max_tokens": "many"}', 400, "max_tokens"),
    (b'{"prompt": "x", "model": "gpt-17"}', 404, "model"),
    (b'{"prompt": [1, 2, 3], "max_tokens": 131072}', 400, "max_tokens"),
    (b'{"prompt": [], "max_tokens": 3}', 400, "prompt"),
    (b'{"max_tokens": 3}', 400, "prompt"),
    (b'{"prompt": "x", "n": 4}', 400, "n"),
    (b'{"prompt": "x", "max_tokens": 5, "min_tokens": 9}', 400, "min_tokens"),
])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(fleet, client, body, status, param):
    url = fleet.urls[0]
    r = client.post(f"{url}/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == status and err["message"] and err["type"]
    if param:
        assert err["param"] == param
    assert client.post(f"{url}/v1/completions", json={"prompt": "ok", "max_tokens": 1}).status_code == 200


def test_prompt_over_the_context_window(fleet, client):
    r = client.post(f"{fleet.urls[0]}/v1/completions", json={"prompt": [1] * 131_072, "max_tokens": 1})
    assert r.status_code == 400 and "maximum context length is 131072" in r.json()["error"]["message"]


def test_oversized_body_is_413(fleet, client):
    r = client.post(f"{fleet.urls[0]}/v1/completions", content=b"x" * (MAX_BODY_BYTES + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == 413


def test_unknown_path_and_method_are_error_objects(fleet, client):
    r = client.get(f"{fleet.urls[0]}/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404
    r = client.get(f"{fleet.urls[0]}/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == 405


REQUIRED = {
    "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge", "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens": "counter", "vllm:generation_tokens": "counter", "vllm:request_success": "counter",
    "vllm:num_preemptions": "counter", "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram", "vllm:request_time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram", "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_prompt_tokens": "histogram", "vllm:request_generation_tokens": "histogram",
}


def metric_families(client, url) -> dict:
    return {f.name: f for f in text_string_to_metric_families(client.get(f"{url}/metrics").text)}


def test_metrics_have_vllm_names_and_count_what_was_served():
    with WorkerThread(EmulatorConfig(time_scale=SCALE), n=1) as f, httpx.Client(timeout=30) as client:
        url = f.urls[0]
        for _ in range(3):
            client.post(f"{url}/v1/completions", json={"prompt": [1] * 64, "max_tokens": 10, "ignore_eos": True})
        fams = metric_families(client, url)
    for name, kind in REQUIRED.items():
        assert fams[name].type == kind, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in fams.values() for s in fam.samples}
    labels = (("engine", "0"), ("model_name", "llama-3.1-8b"))
    assert samples[("vllm:prompt_tokens_total", labels)] == 192
    assert samples[("vllm:generation_tokens_total", labels)] == 30
    assert samples[("vllm:request_success_total", (*labels[:1], ("finished_reason", "length"), labels[1]))] == 3
    assert samples[("vllm:time_to_first_token_seconds_count", labels)] == 3
    assert samples[("vllm:inter_token_latency_seconds_count", labels)] == 27
    assert samples[("vllm:num_requests_running", labels)] == 0


def test_metrics_gauges_show_a_queue_while_busy():
    cfg = EmulatorConfig(time_scale=2.0, max_num_seqs=2)
    with WorkerThread(cfg, n=1) as f, httpx.Client(timeout=60) as client:
        url = f.urls[0]
        body = {"prompt": [1] * 10, "max_tokens": 400, "ignore_eos": True}

        def post():
            try:
                client.post(f"{url}/v1/completions", json=body)
            except httpx.HTTPError:  # cut by the reclaim below
                pass

        threads = [threading.Thread(target=post) for _ in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        fams = metric_families(client, url)
        running = fams["vllm:num_requests_running"].samples[0].value
        waiting = fams["vllm:num_requests_waiting"].samples[0].value
        kv = fams["vllm:kv_cache_usage_perc"].samples[0].value
        f.call(f.fleet.workers[0].reclaim)  # end the long requests now
        for t in threads:
            t.join(10)
    assert running == 2 and waiting == 3 and 0 < kv < 0.01


def test_cold_start_health_503_then_200():
    cfg = EmulatorConfig(time_scale=10.0, cold_start_s=3.0)  # 0.3 s real
    with WorkerThread(cfg, n=1) as f, httpx.Client(timeout=10) as client:
        url = f.urls[0]
        assert client.get(f"{url}/health").status_code == 503
        r = client.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 1})
        assert r.status_code == 503 and r.json()["error"]["code"] == 503
        deadline = time.time() + 5
        while client.get(f"{url}/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.02)
        assert client.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 200


def test_time_scale_shortens_real_latency(client):
    body = {"prompt": [1] * 1000, "max_tokens": 100, "ignore_eos": True}
    times = {}
    for scale in (5.0, 50.0):
        with WorkerThread(EmulatorConfig(time_scale=scale), n=1) as f:
            t0 = time.perf_counter()
            client.post(f"{f.urls[0]}/v1/completions", json=body)
            times[scale] = time.perf_counter() - t0
    # ~0.7 emulated seconds: 140 ms at 5x, 14 ms at 50x (plus HTTP time)
    assert times[5.0] > 4 * times[50.0]
    assert 0.08 < times[5.0] < 0.4


@pytest.mark.parametrize("kind", ["aws", "gcp", "azure"])
def test_spot_notice_in_each_clouds_format_then_reclaim(kind):
    cfg = EmulatorConfig(time_scale=10.0)
    with WorkerThread(cfg, n=1) as f, httpx.Client(timeout=10) as client:
        url = f.urls[0]
        aws = f"{url}/latest/meta-data/spot/instance-action"
        gcp = f"{url}/computeMetadata/v1/instance/preempted"
        azure = f"{url}/metadata/scheduledevents?api-version=2020-07-01"
        assert client.get(aws).status_code == 404
        assert client.get(gcp, headers={"Metadata-Flavor": "Google"}).text == "FALSE"
        assert client.get(gcp).status_code == 403
        assert client.get(azure, headers={"Metadata": "true"}).json()["Events"] == []
        stream_result = {}

        def long_stream():
            try:
                with httpx.stream("POST", f"{url}/v1/completions", timeout=30, json={
                        "prompt": [1] * 10, "max_tokens": 5000, "ignore_eos": True, "stream": True}) as r:
                    stream_result["events"] = sum(1 for _ in r.iter_lines())
            except httpx.HTTPError as exc:
                stream_result["error"] = type(exc).__name__

        t = threading.Thread(target=long_stream)
        t.start()
        time.sleep(0.1)
        r = client.post(f"{url}/admin/interrupt", json={"notice_s": 5, "kind": kind})  # 0.5 s real
        assert r.status_code == 200 and r.json()["kind"] == kind
        action = client.get(aws)
        assert action.status_code == 200 and action.json()["action"] == "terminate"
        assert action.json()["time"].endswith("Z")
        assert client.get(gcp, headers={"Metadata-Flavor": "Google"}).text == "TRUE"
        events = client.get(azure, headers={"Metadata": "true"}).json()["Events"]
        assert events[0]["EventType"] == "Preempt" and events[0]["EventStatus"] == "Scheduled"
        # still serving during the notice
        assert client.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 200
        t.join(10)
        assert "error" in stream_result  # the in-flight stream was cut, not completed
        deadline = time.time() + 5
        while True:  # the worker exits: connections are refused
            try:
                client.get(f"{url}/health")
            except httpx.HTTPError:
                break
            assert time.time() < deadline
            time.sleep(0.05)
        assert f.fleet.workers[0].reclaimed


def test_admin_config_injects_errors_and_slowdown(client):
    with WorkerThread(EmulatorConfig(time_scale=20.0), n=1) as f:
        url = f.urls[0]
        body = {"prompt": [1] * 100, "max_tokens": 50, "ignore_eos": True}
        t0 = time.perf_counter()
        client.post(f"{url}/v1/completions", json=body)
        base = time.perf_counter() - t0
        assert client.post(f"{url}/admin/config", json={"latency_scale": 4.0}).json()["latency_scale"] == 4.0
        t0 = time.perf_counter()
        client.post(f"{url}/v1/completions", json=body)
        assert time.perf_counter() - t0 > 2.5 * base
        client.post(f"{url}/admin/config", json={"latency_scale": 1.0, "error_rate": 1.0, "error_status": 429})
        r = client.post(f"{url}/v1/completions", json=body)
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == 429
        for bad in ({"error_rate": 2}, {"nope": 1}, {"latency_scale": "fast"}, {"error_status": 99}):
            r = client.post(f"{url}/admin/config", json=bad)
            assert r.status_code == 400 and r.json()["error"]["code"] == 400
        assert client.post(f"{url}/admin/config", content=b"{{").status_code == 400
        client.post(f"{url}/admin/config", json={"error_rate": 0.0})
        assert client.post(f"{url}/v1/completions", json=body).status_code == 200


def test_interrupt_rejects_bad_notices(fleet, client):
    for bad in ({"kind": "oracle"}, {"notice_s": -1}, {"notice_s": "soon"}):
        r = client.post(f"{fleet.urls[1]}/admin/interrupt", json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == 400
    assert client.get(f"{fleet.urls[1]}/latest/meta-data/spot/instance-action").status_code == 404


def test_client_disconnect_aborts_the_request():
    with WorkerThread(EmulatorConfig(time_scale=5.0), n=1) as f:
        url = f.urls[0]
        with httpx.stream("POST", f"{url}/v1/completions", timeout=10, json={
                "prompt": [1] * 10, "max_tokens": 10_000, "ignore_eos": True, "stream": True}) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 5:
                    break
        engine = f.fleet.workers[0].engine
        deadline = time.time() + 5
        while engine.running:
            assert time.time() < deadline
            time.sleep(0.02)
        assert engine.kv_free == engine.limits.kv_capacity_tokens
