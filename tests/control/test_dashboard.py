"""The controller's dashboard in headless Chromium: the real app on a loopback port, a Controller on a fake fleet
(actuator, metrics source, fake clock) and a temp SQLite store; the page must draw its charts and tables from the
API without a console or page error, with and without history.

Set ``FLEETWISE_DASHBOARD_SCREENSHOT=/tmp/dashboard.png`` to save a screenshot of the populated page.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path

import pytest

from fleetwise.control.app import create_app
from fleetwise.control.controller import ControlConfig, Controller
from fleetwise.control.store import SqlStore
from fleetwise.control.types import PROVISIONING, SERVING, TIERS, FleetPlan, Histogram, Worker, WorkerMetrics
from fleetwise.errors import ActuatorError
from tests.apps import AppServer
from tests.services import require, unavailable

POOL = "aws:p5.4xlarge"
T0 = 1_700_000_000.0
TTFT_BOUNDS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, math.inf)
ITL_BOUNDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, math.inf)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class FakeActuator:
    """A fleet that follows the plans it is given: new workers provision, then serve on the next observe."""

    name = "fake"
    pool = POOL

    def __init__(self, clock: Clock, fail_on: int = 0) -> None:
        self.clock, self.fail_on, self.plans = clock, fail_on, []
        self.workers = [Worker(f"{t}-0", POOL, t, SERVING, "", T0) for t in TIERS]
        self._n = 1

    def observe(self) -> list[Worker]:
        self.workers = [w if w.state != PROVISIONING else Worker(w.id, w.pool, w.tier, SERVING, w.url, w.launched_at)
                        for w in self.workers]
        return list(self.workers)

    def apply(self, plan: FleetPlan) -> None:
        self.plans.append(plan)
        if len(self.plans) == self.fail_on:
            raise ActuatorError("launch on_demand: InsufficientInstanceCapacity (fake)")
        self.workers = [w for w in self.workers if w.id not in plan.remove]
        for (_, tier), n in plan.desired.items():
            mine = [w for w in self.workers if w.tier == tier and w.id not in plan.draining]
            for w in mine[n:]:
                self.workers.remove(w)
            for _ in range(n - len(mine)):
                self.workers.append(Worker(f"{tier}-{self._n}", POOL, tier, PROVISIONING, "", self.clock()))
                self._n += 1


class FakeMetrics:
    """Growing vLLM counters and latency histograms; demand follows a wave, latency rises with utilization."""

    def __init__(self, clock: Clock, drop_at: int = 0) -> None:
        self.clock, self.drop_at, self.calls = clock, drop_at, 0
        self.cum: dict[str, dict] = {}
        self.last_t = clock()

    def rate(self, t: float) -> float:
        return 60.0 + 40.0 * math.sin(2 * math.pi * (t - T0) / 400.0)

    async def sample(self, workers):
        self.calls += 1
        now, dt = self.clock(), self.clock() - self.last_t
        self.last_t = now
        serving = [w for w in workers if w.state == SERVING]
        util = self.rate(now) / max(1, len(serving)) / 33.0
        out = {}
        for i, w in enumerate(serving):
            if self.calls == self.drop_at and i == 0:
                continue  # one scrape missing: the controller holds the fleet (stale)
            c = self.cum.setdefault(w.id, {"n": 0.0, "ttft": [0.0] * 10, "itl": [0.0] * 10, "tok": 0.0})
            n = self.rate(now) * dt / max(1, len(serving))
            c["n"] += n
            c["tok"] += n * 250
            for key, bounds, mean_s in (("ttft", TTFT_BOUNDS, (0.15 + 0.4 * util**2) / 3),
                                        ("itl", ITL_BOUNDS, (0.02 + 0.025 * util**2) / 3)):
                c[key] = [a + (n * 250 if key == "itl" else n) * (1 - math.exp(-b / mean_s))
                          for a, b in zip(c[key], bounds)]
            out[w.id] = WorkerMetrics(
                t=now, finished=c["n"], prompt_tokens=c["n"] * 1000, generation_tokens=c["tok"], running=4.0,
                waiting=float(int(util * 3) % 4), kv_usage=min(1.0, 0.3 * util),
                ttft=Histogram(TTFT_BOUNDS, tuple(c["ttft"]), c["n"] * 0.2),
                itl=Histogram(ITL_BOUNDS, tuple(c["itl"]), c["tok"] * 0.02))
        return out


@pytest.fixture(scope="module")
def spec():
    from fleetwise.sim.setup import fleet_spec

    return fleet_spec("llama-3.1-8b", "h100", 1, None, "fp8", engine="vllm")


def _controller(spec, tmp_path: Path, steps: int) -> Controller:
    clock = Clock()
    config = ControlConfig(mode="active", interval_s=60, fast_interval_s=10, cooldown_s=60,
                           initial=(("reserved", 1), ("on_demand", 1), ("spot", 1)))
    store = SqlStore(f"sqlite:///{tmp_path / 'control.db'}")
    controller = Controller(config, FakeActuator(clock, fail_on=5), FakeMetrics(clock, drop_at=12), store,
                            spec=spec, clock=clock)

    async def drive():
        for _ in range(steps):
            clock.t += 10.0
            await controller.step()

    # Playwright's sync API keeps an event loop running in this thread: drive the steps in another one.
    worker = threading.Thread(target=asyncio.run, args=(drive(),))
    worker.start()
    worker.join()
    return controller


def Server(controller: Controller) -> AppServer:
    """The control app under uvicorn on a free loopback port, in a background thread."""
    return AppServer(create_app(controller, run_loop=False))


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (which cannot download its own browser here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (Python)", "pip install 'playwright>=1.40'")
    chromium = require("chromium", "apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _open(browser, url: str):
    """A page on ``url`` that has rendered both APIs once; returns it with the errors it reported."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    return page, errors


def _screenshot(page, suffix: str = "") -> None:
    path = os.environ.get("FLEETWISE_DASHBOARD_SCREENSHOT")
    if path:
        page.screenshot(path=path.replace(".png", f"{suffix}.png"), full_page=True)


def test_dashboard_draws_state_and_decisions(browser, spec, tmp_path):
    controller = _controller(spec, tmp_path, steps=40)
    assert len(controller.snapshot.history) == 40
    with Server(controller) as server:
        page, errors = _open(browser, server.url)
        for chart in ("ch-rate", "ch-workers", "ch-cost", "ch-ttft", "ch-itl"):
            assert int(page.get_attribute(f"#{chart}", "data-points")) > 0, chart
            assert page.locator(f"#{chart} path").count() > 0, chart
        assert page.locator("#ch-workers path").count() >= 4  # three tier areas and the desired line
        worker_ids = page.locator("#workers tbody tr td:first-child").all_inner_texts()
        assert sorted(worker_ids) == sorted(w.id for w in controller.snapshot.workers)
        assert "reserved-0" in worker_ids
        decisions = page.locator("#decisions tbody tr")
        assert decisions.count() == min(50, controller.store.count()) > 0
        reasons = set(page.locator("#decisions tbody tr td:nth-child(3)").all_inner_texts())
        assert "hold_stale" in reasons
        assert page.inner_text("#mode").strip().lower() == "active"
        assert "InsufficientInstanceCapacity" in page.inner_text("#actuator-error")
        assert page.is_hidden("#stale") and page.is_hidden("#fetch-error")
        _screenshot(page)
        page.set_viewport_size({"width": 420, "height": 900})  # narrow: charts redraw for the new width
        page.wait_for_timeout(200)
        _screenshot(page, "-narrow")
        assert page.locator("#ch-rate path").count() > 0
        page.close()
    assert errors == []


def test_dashboard_renders_empty_history(browser, spec, tmp_path):
    controller = _controller(spec, tmp_path, steps=0)
    with Server(controller) as server:
        page, errors = _open(browser, server.url)
        assert page.get_attribute("#ch-rate", "data-points") == "0"
        assert "no data yet" in page.text_content("#ch-rate")
        assert "no workers" in page.inner_text("#workers")
        assert "no decisions" in page.inner_text("#decisions")
        assert page.inner_text("#mode").strip().lower() == "active"
        _screenshot(page, "-empty")
        # rows of nulls (NaN is sent as null), a missing by_tier, a stale window: drawn without an exception
        # (read back in the same task, so a poll cannot redraw in between)
        got = page.evaluate("""() => {
            renderState({mode: "advisory", stale: true, slo: {ttft_ms: 1000, tpot_ms: 50},
                history: [{t: 0}, {t: 10, demand_rps: null, by_tier: null, ttft_p95_s: null},
                          {t: 20, demand_rps: 5, desired: 2, by_tier: {spot: null, reserved: 1}}]});
            return {stale: !document.getElementById("stale").hidden, mode: document.getElementById("mode").textContent,
                    points: document.getElementById("ch-rate").dataset.points};
        }""")
        assert got == {"stale": True, "mode": "advisory", "points": "1"}
        page.close()
    assert errors == []
