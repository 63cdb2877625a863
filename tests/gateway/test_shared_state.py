"""Three gateway processes on one Redis: one budget, one cache."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from fleetwise.emulate import EmulatorConfig, WorkerThread
from tests.services import require_redis


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def three_gateways(tmp_path):
    url = require_redis()
    tenant = f"t{uuid.uuid4().hex[:8]}"  # a fresh tenant: budgets in Redis are per tenant and day
    worst = (10 * 1.0 + 100 * 2.0) / 1e6  # 10 prompt tokens + 100 output tokens at $1 / $2 per 1M
    with WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=50.0)) as worker:
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(f"backends: {{llama-3.1-8b: [{worker.urls[0]}]}}\n"
                       "prices_usd_per_1m_tokens: {llama-3.1-8b: {input: 1.0, output: 2.0}}\n"
                       f"tenants:\n  - {{name: {tenant}, api_keys: [sk-{tenant}], "
                       f"budget_usd_per_day: {worst * 20 + 1e-9!r}}}\n")
        ports = [_port() for _ in range(3)]
        procs = [subprocess.Popen([sys.executable, "-m", "fleetwise", "gateway", "--config", str(cfg), "--state", url,
                                   "--port", str(p)], stderr=subprocess.DEVNULL, env=os.environ.copy())
                 for p in ports]
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            deadline = time.monotonic() + 30
            for u in urls:
                _wait_healthy(u, deadline)
            yield urls, f"sk-{tenant}"
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(15)


def test_one_budget_across_three_gateway_processes(three_gateways):
    urls, key = three_gateways
    body = {"model": "llama-3.1-8b", "prompt": "x" * 40, "max_tokens": 100, "temperature": 0.5, "ignore_eos": True}

    async def run():
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:
            return await asyncio.gather(*(client.post(urls[i % 3] + "/v1/completions", json=body)
                                          for i in range(90)))

    answers = asyncio.run(run())
    assert sum(a.status_code == 200 for a in answers) == 20
    assert {a.status_code for a in answers} == {200, 429}


def test_the_cache_is_shared_across_processes(three_gateways):
    urls, key = three_gateways
    body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": uuid.uuid4().hex}],
            "max_tokens": 5, "temperature": 0}
    headers = {"authorization": f"Bearer {key}"}
    first = httpx.post(urls[0] + "/v1/chat/completions", json=body, headers=headers, timeout=30).json()
    again = httpx.post(urls[2] + "/v1/chat/completions", json=body, headers=headers, timeout=30).json()
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    hits = httpx.get(urls[2] + "/metrics").text
    assert "fleetwise_gateway_cache_hits_total 1.0" in hits


def test_workers_option_runs_several_processes_on_shared_state(tmp_path):
    url = require_redis()
    with WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=50.0)) as worker:
        port = _port()
        proc = subprocess.Popen([sys.executable, "-m", "fleetwise", "gateway", "--backend",
                                 f"llama-3.1-8b={worker.urls[0]}", "--state", url, "--port", str(port),
                                 "--workers", "2"], stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, time.monotonic() + 30, proc)
            body = {"model": "llama-3.1-8b", "prompt": "hello", "max_tokens": 3}
            assert all(httpx.post(base + "/v1/completions", json=body, timeout=30).status_code == 200
                       for _ in range(6))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)


def test_workers_without_shared_state_is_refused():
    out = subprocess.run([sys.executable, "-m", "fleetwise", "gateway", "--backend", "m=http://127.0.0.1:1",
                          "--workers", "2"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "shared state" in out.stderr and "Traceback" not in out.stderr


def _wait_healthy(base: str, deadline: float, proc: subprocess.Popen | None = None) -> None:
    """Until GET {base}/health answers 200; fails at ``deadline`` or when ``proc`` has exited."""
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and (proc is None or proc.poll() is None), f"{base} did not start"
        time.sleep(0.1)
