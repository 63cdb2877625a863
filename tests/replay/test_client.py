"""fleetwise.replay: open-loop replay against the instant endpoint on loopback, with injected faults.

Every server here is an instant endpoint (fleetwise.replay.instant) on a free 127.0.0.1 port in a daemon
thread, stopped when its test ends. A request's index is readable from its prompt (the first token id is
1000 + index), which the fault rules use to pick their victims deterministically.
"""

from __future__ import annotations

import asyncio
import csv
import math
import socket
import threading
import time

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.replay import CSV_COLUMNS, ReplayProgress, RequestMix, replay_trace
from fleetwise.replay.client import _Prompts, _Run
from fleetwise.replay.instant import InstantConfig, serve_in_thread
from fleetwise.traffic.records import RequestTrace

CLIENTS = ("aiohttp", "httpx")


def make_trace(n: int = 20, span_s: float = 0.2, isl: int = 32, osl: int = 6, prefix=None) -> RequestTrace:
    offsets, ids = (None, None) if prefix is None else prefix
    return RequestTrace(np.linspace(0.0, span_s, n), np.full(n, isl, dtype=np.int64),
                        np.full(n, osl, dtype=np.int64), prefix_offsets=offsets, prefix_ids=ids)


def index_of(body: dict) -> int:
    return body["prompt"][0] - 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -------------------------------------------------------------------------------------------- measuring


@pytest.mark.parametrize("client", CLIENTS)
def test_every_request_completes_with_ordered_finite_latencies(client):
    trace = make_trace(n=20, osl=6)
    with serve_in_thread(InstantConfig(token_delay_s=0.002)) as server:
        result = replay_trace(trace, [server.url], http_client=client)
    s = result.summary()
    assert (s["requests"], s["sent"], s["completed"], s["failed"]) == (20, 20, 20, 0)
    assert result.status == ("ok",) * 20
    assert np.all(np.isfinite(result.ttft_s)) and np.all(np.isfinite(result.tpot_s))
    assert np.all(result.ttft_s > 0) and np.all(result.ttft_s <= result.e2e_s)
    assert np.all(result.tpot_s >= 0.0015)  # 2 ms between tokens on the server
    assert s["ttft_ms"]["p50"] <= s["ttft_ms"]["p95"] <= s["ttft_ms"]["p99"] <= s["e2e_ms"]["p99"]
    assert np.all(result.output_tokens == 6)  # from the usage chunk
    assert len(result.itl_s) == 20 * 5 and np.all(result.itl_s >= 0)  # 0: two events in one read
    assert s["model"] == "instant" and s["slo_attainment"] == 1.0 and s["short_outputs"] == 0


def test_request_bodies_force_the_trace_lengths():
    trace = make_trace(n=3, isl=40, osl=7)
    with serve_in_thread() as server:
        server.record = True
        replay_trace(trace, [server.url], model="m1")
    bodies = sorted(server.requests, key=index_of)
    assert [index_of(b) for b in bodies] == [0, 1, 2]
    for b in bodies:
        assert b["model"] == "m1" and len(b["prompt"]) == 40 and all(isinstance(t, int) for t in b["prompt"])
        assert b["max_tokens"] == b["min_tokens"] == 7 and b["ignore_eos"] is True and b["temperature"] == 0
        assert b["stream"] is True and b["stream_options"] == {"include_usage": True}
    assert len({b["prompt"][0] for b in bodies}) == 3  # no shared prefix between requests


def test_prefix_block_ids_share_prompt_tokens():
    offsets = np.array([0, 2, 4, 5])
    ids = np.array([7, 8, 7, 9, 10])  # requests 0 and 1 share their first block, request 2 shares nothing
    trace = make_trace(n=3, isl=700, osl=2, prefix=(offsets, ids))
    prompts = _Prompts(trace, "completions", "m", True, share_prefixes=True)
    p = [[int(t) for t in prompts._prefixed(i, 700).split(",")] for i in range(3)]
    assert all(len(x) == 700 for x in p)
    assert p[0][:512] == p[1][:512] and p[0][512:] != p[1][512:]
    assert p[2][:512] != p[0][:512]
    unique = _Prompts(trace, "completions", "m", True, share_prefixes=False)
    assert unique._unique(0, 700).split(",")[0] != unique._unique(1, 700).split(",")[0]


def test_request_mix_draws_the_stated_shares_and_repeats_only_recent_deterministic_originals():
    n = 20_000
    source, deterministic = RequestMix(deterministic_share=0.5, duplicate_share=0.15, duplicate_window=50,
                                       seed=3).draw(n)
    repeat = source != np.arange(n)
    assert abs(repeat.mean() - 0.15) < 0.01
    assert abs(deterministic[~repeat].mean() - 0.5) < 0.015
    assert deterministic[repeat].all()  # a repeat is sent as its original: deterministic
    assert (source[repeat] < np.flatnonzero(repeat)).all()
    assert not repeat[source[repeat]].any() and deterministic[source[repeat]].all()  # originals, not repeats
    originals = np.flatnonzero(deterministic & ~repeat)
    for i in np.flatnonzero(repeat)[:500]:  # within the last 50 deterministic originals before it
        before = originals[originals < i]
        assert source[i] in before[-50:]
    same, det = RequestMix().draw(100)  # the default: every request itself, deterministic
    assert (same == np.arange(100)).all() and det.all()
    with pytest.raises(ConfigError, match="duplicate_share"):
        RequestMix(duplicate_share=1.5)


def test_repeated_requests_send_the_original_body_and_others_their_temperature():
    trace = RequestTrace(np.linspace(0.0, 0.2, 40), np.arange(10, 50, dtype=np.int64),
                         np.arange(2, 42, dtype=np.int64))
    mix = RequestMix(deterministic_share=0.5, duplicate_share=0.3, temperature=0.9, seed=1)
    source, deterministic = mix.draw(40)
    with serve_in_thread() as server:
        server.record = True
        result = replay_trace(trace, [server.url], api="chat", mix=mix)
    assert result.summary()["completed"] == 40
    by_head = {}
    for b in server.requests:
        by_head.setdefault(b["messages"][0]["content"].split()[0], []).append(b)
    for i in range(40):
        bodies = by_head[f"r{i}"] if source[i] == i else None
        if bodies is None:
            continue
        copies = 1 + int((source == i).sum() - 1)
        assert len(bodies) == copies and all(b == bodies[0] for b in bodies)  # repeats are byte-equal
        assert bodies[0]["max_tokens"] == 2 + i
        assert bodies[0]["temperature"] == (0 if deterministic[i] else 0.9)
    assert sum(len(v) for v in by_head.values()) == 40
    assert (result.max_tokens == trace.output_tokens[source]).all()  # lengths follow the original


@pytest.mark.parametrize("client", CLIENTS)
def test_chat_api_and_no_stream(client):
    trace = make_trace(n=4, isl=25, osl=5)
    with serve_in_thread() as server:
        server.record = True
        chat = replay_trace(trace, [server.url], api="chat", http_client=client)
        whole = replay_trace(trace, [server.url], stream=False, http_client=client)
    assert chat.summary()["completed"] == 4 and np.all(chat.output_tokens == 5)
    words = [len(b["messages"][0]["content"].split()) for b in server.requests if "messages" in b]
    assert words == [25] * 4  # one word per input token
    s = whole.summary()
    assert s["completed"] == 4 and math.isnan(s["tpot_ms"]["p50"])
    assert s["ttft_ms"]["p50"] == s["e2e_ms"]["p50"]
    assert s["slo_attainment"] == 1.0  # no TPOT to judge: TTFT alone


def test_open_loop_sends_on_schedule_while_earlier_requests_are_open():
    trace = make_trace(n=10, span_s=0.45, osl=2)
    with serve_in_thread(InstantConfig(first_token_delay_s=0.3)) as server:
        result = replay_trace(trace, [server.url], time_compress=1.5)
    lag_ms = result.client_lag_s * 1e3
    assert np.all(np.abs(lag_ms) < 50), lag_ms  # generous: other work may share this machine's cores
    np.testing.assert_allclose(result.sent_s, result.arrival_s, atol=0.075)  # both in trace time
    # each answer takes 0.3 s wall but requests went out every 0.033 s: they overlapped (open loop)
    assert result.sent_s[5] < result.sent_s[0] + result.e2e_s[0]


def test_time_compress_reports_latency_in_trace_time():
    trace = make_trace(n=4, span_s=0.1, osl=2)
    with serve_in_thread(InstantConfig(first_token_delay_s=0.05)) as server:
        result = replay_trace(trace, [server.url], time_compress=4.0)
    assert np.all((result.ttft_s > 0.19) & (result.ttft_s < 1.0)), result.ttft_s  # 50 ms wall x 4
    assert result.summary()["time_compress"] == 4.0
    assert result.arrival_s[-1] == pytest.approx(0.1)


def test_csv_has_one_row_per_request(tmp_path):
    trace = make_trace(n=6)
    fault = InstantConfig(fault=lambda n, b: "http_500" if index_of(b) == 2 else None)
    with serve_in_thread(fault) as server:
        result = replay_trace(trace, [server.url])
    path = tmp_path / "requests.csv"
    result.write_csv(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["id"] for r in rows] == [str(i) for i in range(6)]
    assert [r["status"] for r in rows] == ["ok", "ok", "http_500", "ok", "ok", "ok"]
    assert rows[2]["ttft_ms"] == rows[2]["e2e_ms"] == "" and float(rows[0]["ttft_ms"]) > 0
    assert rows[1]["input_tokens"] == "32" and rows[1]["output_tokens"] == "6"


# ---------------------------------------------------------------------------------------------- routing


def test_several_urls_split_by_least_outstanding_tokens():
    isl = np.array([1000, 10, 10, 10])
    trace = RequestTrace(np.array([0.0, 0.01, 0.02, 0.03]), isl, np.full(4, 10))
    slow = InstantConfig(first_token_delay_s=0.3)
    with serve_in_thread(slow) as a, serve_in_thread(slow) as b:
        result = replay_trace(trace, [a.url, b.url])
    # the big request goes first to a (a tie); while it is open b has fewer outstanding tokens every time
    assert result.url_index.tolist() == [0, 1, 1, 1]
    by_url = result.summary()["by_url"]
    assert [u["sent"] for u in by_url] == [1, 3] and [u["tokens"] for u in by_url] == [1010, 60]


def test_equal_requests_alternate_between_busy_endpoints():
    trace = make_trace(n=20, span_s=0.1, osl=2)
    slow = InstantConfig(first_token_delay_s=0.3)
    with serve_in_thread(slow) as a, serve_in_thread(slow) as b:
        result = replay_trace(trace, [a.url, b.url])
    assert result.url_index.tolist() == [0, 1] * 10
    assert result.summary()["completed"] == 20


# --------------------------------------------------------------------------------------------- failures


def _faults(n: int, body: dict) -> str | None:
    faults = {1: "http_429", 2: "http_500", 3: "close_mid_stream", 4: "close", 5: "no_done"}
    return faults.get(index_of(body) % 8)


@pytest.mark.parametrize("client", CLIENTS)
def test_failures_are_counted_by_reason_and_never_stop_the_run(client):
    trace = make_trace(n=24, span_s=0.2)
    with serve_in_thread(InstantConfig(fault=_faults, token_delay_s=0.001)) as server:
        result = replay_trace(trace, [server.url], http_client=client)
    s = result.summary()
    assert s["failed_by_reason"] == {"connection_lost": 6, "http_429": 3, "http_500": 3, "incomplete": 3}
    assert s["completed"] == 9 and s["failed"] == 15 and s["sent"] == 24
    assert "injected http_429" in s["first_error_by_reason"]["http_429"]
    assert s["slo_attainment"] == pytest.approx(9 / 24)
    assert result.status[3] == "connection_lost" and np.isfinite(result.ttft_s[3])  # dropped mid-stream
    assert result.status[4] == "connection_lost" and np.isnan(result.ttft_s[4])  # dropped before answering


@pytest.mark.parametrize("client", CLIENTS)
def test_hanging_requests_time_out(client):
    trace = make_trace(n=6, span_s=0.05)
    hang = InstantConfig(fault=lambda n, b: "hang" if index_of(b) % 2 else None)
    with serve_in_thread(hang) as server:
        t0 = time.perf_counter()
        result = replay_trace(trace, [server.url], timeout_s=0.3, http_client=client)
    assert time.perf_counter() - t0 < 3
    assert result.summary()["failed_by_reason"] == {"timeout": 3} and result.summary()["completed"] == 3


def test_unreachable_endpoint_fails_per_request_or_up_front():
    url = f"http://127.0.0.1:{free_port()}"
    result = replay_trace(make_trace(n=3), [url], model="m")
    assert result.summary()["failed_by_reason"] == {"connection_lost": 3}
    with pytest.raises(ConfigError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1/models"):
        replay_trace(make_trace(n=3), [url])


def test_stop_event_cancels_in_flight_and_keeps_the_measurements():
    trace = make_trace(n=40, span_s=4.0, osl=2)
    stop = threading.Event()
    seen: list[ReplayProgress] = []

    def progress(p: ReplayProgress) -> None:  # stop once something completed (not at a wall time: the
        seen.append(p)                           # replay's start-up, a full GC, varies with the process)
        if p.completed:
            stop.set()

    with serve_in_thread(InstantConfig(first_token_delay_s=0.2)) as server:
        t0 = time.perf_counter()
        result = replay_trace(trace, [server.url], stop_event=stop, progress=progress)
    assert time.perf_counter() - t0 < 3.0  # 4 s of arrivals, stopped after 0.5 s
    s = result.summary()
    assert s["interrupted"] and s["failed"] == 0
    assert s["completed"] > 0 and s["cancelled"] > 0 and s["not_sent"] > 20
    assert s["completed"] + s["cancelled"] + s["not_sent"] == 40
    assert seen and seen[-1].sent == s["sent"] and seen[-1].total == 40


def test_async_api_and_asyncio_stop_event():
    from fleetwise.replay import areplay_trace

    async def go(url):
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        return await areplay_trace(make_trace(n=20, span_s=2.0), [url], stop_event=stop)

    with serve_in_thread() as server:
        result = asyncio.run(go(server.url))
    assert result.interrupted and 0 < result.summary()["completed"] < 20


@pytest.mark.parametrize("client", CLIENTS)
def test_following_backends_a_dead_or_refusing_backend_is_routed_around(client):
    """A backend the list still names after it went away (the controller listing the fleet is restarting):
    least-outstanding routing would send every request to it - it has nothing outstanding - and fail them
    all. Following backends, a refused connection or a 503 before the answer sends the request elsewhere."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    turned_away = InstantConfig(fault=lambda n, b: "http_503")
    with serve_in_thread(InstantConfig(token_delay_s=0.001)) as good, serve_in_thread(turned_away) as busy:
        urls = [dead, busy.url, good.url]

        async def listed():  # the stale list, every poll
            return urls

        result = replay_trace(make_trace(n=60, span_s=0.6), urls, model="instant", http_client=client, backends=listed,
                              timeout_s=20.0)
    s = result.summary()
    assert (s["completed"], s["failed"]) == (60, 0)
    assert set(result.url_index.tolist()) == {2}  # every answer came from the one live backend
    assert 2 <= s["rerouted"] < 60  # each refusal ejected its backend for a while: not one per request


def test_with_fixed_urls_a_dead_backend_is_a_failure_not_hidden():
    """Without a backend list the replay measures the URLs it was given: a refused connection is reported."""
    dead = f"http://127.0.0.1:{free_port()}"
    with serve_in_thread() as good:
        result = replay_trace(make_trace(n=10, span_s=0.1), [dead, good.url], model="instant")
    s = result.summary()
    assert s["failed_by_reason"].get("connection_lost", 0) >= 1 and s["rerouted"] == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"urls": ["ftp://x:1"]}, "http:// or https://"),
    ({"urls": ["http://"]}, "with a host"),
    ({"urls": []}, "at least one server URL"),
    ({"time_compress": 0.0}, "time-compression"),
    ({"time_compress": math.inf}, "time-compression"),
    ({"max_in_flight": 0}, "in-flight limit"),
    ({"api": "embeddings"}, "the API must be"),
    ({"trace": make_trace(n=0)}, "no requests"),
])
def test_bad_arguments_raise_config_errors(kwargs, match):
    args = {"trace": make_trace(n=2), "urls": ["http://127.0.0.1:9"], **kwargs}
    with pytest.raises(ConfigError, match=match):
        replay_trace(args.pop("trace"), args.pop("urls"), model="m", **args)


# ------------------------------------------------------------------------------------------------ the SSE


class _FakeAnswer:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def chunks(self):
        for k, piece in enumerate(self.pieces):
            yield 1.0 + 0.01 * k, piece


def test_sse_parsing_handles_crlf_split_events_comments_and_empty_deltas():
    stream = (b': ping\r\n\r\ndata: {"choices":[{"delta":{"role":"assistant","content":""}}]}\r\n\r\n'
              b'event: message\r\ndata: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
              b'data: {"choices":[{"delta":{"content": "b"}}]}\r\n\r\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\r\n\r\n'
              b"data: [DONE]\r\n\r\n")
    pieces = [stream[k:k + 13] for k in range(0, len(stream), 13)]
    run = _Run(None, make_trace(n=1), ["http://h:1"], "m", 1.0, True, 1, 1.0, "chat", False)
    status = asyncio.run(run._read_stream(0, _FakeAnswer(pieces), 1.0))
    assert status == "ok" and run.n_out[0] == 2
    assert run.ttft[0] > 0 and run.e2e[0] >= run.ttft[0] and len(run.itl) == 1


def test_itl_samples_are_thinned_evenly_past_the_cap(monkeypatch):
    from fleetwise.replay import client

    monkeypatch.setattr(client, "MAX_ITL_SAMPLES", 8)
    run = _Run(None, make_trace(n=1), ["http://h:1"], "m", 1.0, True, 1, 1.0, "completions", False)
    for k in range(64):
        run._gap(float(k))
    kept = list(run.itl)
    assert 4 <= len(kept) < 8 and kept == sorted(kept) and kept[-1] >= 48  # spread over all 64, not the first 8


def test_the_heap_is_frozen_only_while_replaying_and_only_if_nobody_froze_it():
    import gc

    from fleetwise.replay import client

    seen = []
    with client._frozen_heap():
        seen.append(gc.get_freeze_count())
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # a process that froze its own start-up heap (as `fleetwise emulate` does) keeps it frozen
    try:
        before = gc.get_freeze_count()
        with client._frozen_heap():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
