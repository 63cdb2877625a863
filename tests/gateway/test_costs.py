"""Metering end to end: a gateway with its usage in SQLite, then `fleetwise report costs` over it."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from fleetwise.emulate import EmulatorConfig, WorkerThread
from fleetwise.gateway.app import create_app
from fleetwise.gateway.config import GatewayFile
from fleetwise.gateway.service import build_gateway
from tests.apps import AppServer


@pytest.fixture(scope="module")
def worker():
    with WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=50.0)) as w:
        yield w


def test_usage_is_metered_and_reported_with_savings(worker, tmp_path):
    state = f"sqlite:///{tmp_path}/gw.db"
    cfg = GatewayFile.model_validate({
        "backends": {"llama-3.1-8b": worker.urls},
        "prices_usd_per_1m_tokens": {"llama-3.1-8b": {"input": 1.0, "output": 2.0}},
        "tenants": [{"name": "acme", "api_keys": ["sk-acme-0001"]}, {"name": "beta", "api_keys": ["sk-beta-0001"]}],
    })
    body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
            "temperature": 0, "ignore_eos": True}
    with AppServer(create_app(build_gateway(cfg, state))) as server:
        for key in ("sk-acme-0001", "sk-acme-0001", "sk-beta-0001"):
            r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == 200
        usage = httpx.get(server.url + "/v1/usage", headers={"authorization": "Bearer sk-acme-0001"}).json()
    assert usage["total"]["requests"] == 2  # a tenant sees its own usage only
    assert usage["saved_by"]["cache"] > 0  # the second identical request was a cache hit
    out = subprocess.run([sys.executable, "-m", "fleetwise", "report", "costs", "--state", state, "--json",
                          "--report", str(tmp_path / "costs.html")], capture_output=True, text=True, check=False,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["total"]["requests"] == 3 and set(summary["by_tenant"]) == {"acme", "beta"}
    # beta's scope is its own: the same request was not served from acme's entry
    assert summary["by_tenant"]["beta"]["cost_usd"] > 0 and summary["by_tenant"]["acme"]["saved_usd"] > 0
    per_request = (7 * 1.0 + 10 * 2.0) / 1e6  # "hi" = 1 token + 3 per message + 3 for the reply
    assert summary["by_tenant"]["beta"]["cost_usd"] == pytest.approx(per_request, rel=1e-6)
    assert "Savings by mechanism" in (tmp_path / "costs.html").read_text()
