"""The controller's HTTP face: state and decisions as JSON, Prometheus metrics, the backends a router may use,
and the dashboard page.

* ``GET /api/state`` - desired and actual workers per pool and tier, draining ones, the last window's demand,
  latency and SLO attainment, forecast, capacity, cost per hour, and a history for charts.
* ``GET /api/decisions?limit=N`` - the latest recorded decisions, newest first.
* ``GET /api/backends`` - serving workers that take new work (draining ones excluded): what a router or the
  gateway sends requests to. 503 until the first step (a restarted controller has not observed the fleet
  yet): a router keeps the list it has.
* ``GET /metrics`` - ``fleetwise_*`` metrics (names in :mod:`fleetwise.control.names`).
* ``GET /`` - the dashboard (``dashboard.html`` beside this module; it reads the two APIs).
"""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fleetwise.control import names
from fleetwise.control.controller import STEP_BUCKETS_S, Controller
from fleetwise.control.types import PENDING, SERVING, TIERS


def _num(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def state_json(c: Controller) -> dict:
    """The controller's current view as plain JSON (NaN as null)."""
    s = c.snapshot
    obs = s.observation
    pools: dict[str, dict] = {}
    for tier in TIERS:
        mine = [w for w in s.workers if w.tier == tier]
        pools.setdefault(c.pool, {})[tier] = {
            "desired": s.desired.get(tier, 0),
            "actual": sum(1 for w in mine if w.state != PENDING and w.id not in s.draining),
            "serving": sum(1 for w in mine if w.state == SERVING and w.id not in s.draining),
            "pending": sum(1 for w in mine if w.state == PENDING),
            "draining": sum(1 for w in mine if w.id in s.draining),
        }
    return {
        "t": _num(s.t), "mode": c.config.mode, "pool": c.pool, "model": c.config.model,
        "slo": {"ttft_ms": c.config.ttft_ms, "tpot_ms": c.config.tpot_ms},
        "pools": pools,
        "workers": [{"id": w.id, "pool": w.pool, "tier": w.tier, "state": w.state, "url": w.url,
                     "draining": w.id in s.draining} for w in s.workers],
        "demand_rps": _num(obs.arrivals_rps) if obs else None,
        "forecast_rps": _num(s.forecast_rps),
        "capacity_rps": _num(s.capacity_rps),
        "usd_per_hour": _num(s.usd_per_hour),
        "latency": {"ttft_p95_s": _num(obs.ttft_p95_s) if obs else None,
                    "itl_p95_s": _num(obs.itl_p95_s) if obs else None,
                    "ttft_attainment": _num(obs.ttft_attainment) if obs else None,
                    "itl_attainment": _num(obs.itl_attainment) if obs else None},
        "queue": {"running": obs.running if obs else 0, "waiting": obs.waiting if obs else 0},
        "stale": bool(obs.stale) if obs else False,
        "spot_notices": s.notices_total,
        "actuator_errors": s.actuator_errors, "last_error": s.last_error,
        "history": [{k: (_clean(v)) for k, v in row.items()} for row in s.history[-720:]],
    }


def _clean(v):
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def metrics_text(c: Controller) -> bytes:
    """Prometheus exposition of the controller's ``fleetwise_*`` metrics."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    s, obs = c.snapshot, c.snapshot.observation

    class _Collector:
        def collect(self):
            desired = GaugeMetricFamily(names.DESIRED_REPLICAS, "Workers the controller wants taking new work.",
                                        labels=["pool", "tier"])
            current = GaugeMetricFamily(names.CURRENT_REPLICAS, "Workers by state (draining: no new work).",
                                        labels=["pool", "tier", "state"])
            for tier in TIERS:
                desired.add_metric([c.pool, tier], s.desired.get(tier, 0))
                for state in ("pending", "provisioning", "serving", "terminating", "draining"):
                    n = sum(1 for w in s.workers if w.tier == tier and
                            ((w.id in s.draining) if state == "draining" else
                             (w.state == state and w.id not in s.draining)))
                    current.add_metric([c.pool, tier, state], n)
            yield desired
            yield current
            yield GaugeMetricFamily(names.FLEET_COST, "USD per hour billed for live workers.", value=s.usd_per_hour)
            notices = CounterMetricFamily(names.SPOT_NOTICES, "Spot interruption notices seen.", labels=["pool"])
            notices.add_metric([c.pool], s.notices_total)
            yield notices
            decisions = CounterMetricFamily(names.DECISIONS, "Decisions recorded.", labels=["reason", "mode"])
            for (reason, mode), n in sorted(s.decisions_total.items()):
                decisions.add_metric([reason, mode], n)
            yield decisions
            yield CounterMetricFamily(names.ACTUATOR_ERRORS, "Failed actuator calls.", value=s.actuator_errors)
            for name, text, value in ((names.DEMAND_RPS, "Observed arrival rate.", obs.arrivals_rps if obs else None),
                                      (names.CAPACITY_RPS, "Serving workers x goodput at the SLO.", s.capacity_rps),
                                      (names.TTFT_P95, "p95 TTFT over the last window.", obs.ttft_p95_s if obs else None),
                                      (names.ITL_P95, "p95 inter-token latency over the last window.",
                                       obs.itl_p95_s if obs else None)):
                if _num(value) is not None:
                    yield GaugeMetricFamily(name, text, value=value)
            if _num(s.forecast_rps) is not None:
                fc = GaugeMetricFamily(names.FORECAST_RPS, "Slow loop's demand forecast.", labels=["quantile"])
                fc.add_metric([f"{getattr(getattr(c.policy, 'slow', None), 'quantile', 0.95):g}"], s.forecast_rps)
                yield fc
            att = GaugeMetricFamily(names.SLO_ATTAINMENT, "Share within the SLO target over the window.",
                                    labels=["metric"])
            target = GaugeMetricFamily(names.SLO_TARGET, "SLO target.", labels=["metric"])
            for metric, share, goal in (("ttft", obs.ttft_attainment if obs else None, c.config.ttft_ms),
                                        ("itl", obs.itl_attainment if obs else None, c.config.tpot_ms)):
                if _num(share) is not None:
                    att.add_metric([metric], share)
                target.add_metric([metric], goal / 1e3)
            yield att
            yield target
            last = GaugeMetricFamily(names.LAST_STEP, "Wall time a loop last completed.", labels=["loop"])
            for loop, t in sorted(s.last_step.items()):
                last.add_metric([loop], t)
            yield last
            yield _step_histogram(HistogramMetricFamily, s)
            if c.config.budget_usd_per_hour is not None:
                yield GaugeMetricFamily(names.BUDGET, "Configured USD/hour cap.", value=c.config.budget_usd_per_hour)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _step_histogram(family, snapshot):
    """Decision latency per loop since the controller started (cumulative, as Prometheus expects)."""
    h = family(names.STEP_SECONDS, "Seconds one controller step took.", labels=["loop"])
    for loop, counts in sorted(snapshot.step_buckets.items()):
        bounds = [f"{b:g}" for b in STEP_BUCKETS_S] + ["+Inf"]
        h.add_metric([loop], list(zip(bounds, counts)), snapshot.step_sum_s.get(loop, 0.0))
    return h


def create_app(controller: Controller, run_loop: bool = True) -> FastAPI:
    """The controller's FastAPI app; with ``run_loop`` the reconcile loop runs for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(_app):
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop)) if run_loop else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task

    app = FastAPI(title="fleetwise control", lifespan=lifespan)
    app.state.controller = controller

    @app.get("/api/state")
    async def api_state():
        return JSONResponse(state_json(controller))

    @app.get("/api/decisions")
    async def api_decisions(limit: int = Query(100, ge=1, le=10_000), since_id: int = Query(0, ge=0)):
        rows = await asyncio.to_thread(controller.store.decisions, limit, since_id)
        return JSONResponse([_clean({**vars(d), "desired": dict(d.desired), "inputs": dict(d.inputs)})
                             for d in rows])

    @app.get("/api/backends")
    async def api_backends():
        s = controller.snapshot
        if not math.isfinite(s.t):  # just started: an empty list would tell routers the fleet is gone
            return JSONResponse({"error": "the controller has not observed the fleet yet; keep the last list"},
                                503, headers={"retry-after": "1"})
        return {"model": controller.config.model,
                "backends": [{"id": w.id, "url": w.url, "tier": w.tier} for w in s.workers
                             if w.state == SERVING and w.id not in s.draining],
                "draining": [{"id": w.id, "url": w.url} for w in s.workers if w.id in s.draining]}

    @app.get("/metrics")
    async def metrics():
        return Response(metrics_text(controller), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def dashboard():
        return HTMLResponse(_dashboard_html())

    return app


def _dashboard_html() -> str:
    try:
        return resources.files("fleetwise.control").joinpath("dashboard.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "<!doctype html><title>fleetwise control</title><p>dashboard.html is missing; see /api/state"
