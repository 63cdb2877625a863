"""The testbed: a GPU-free fleet run by the real controller, a trace replayed through it, chaos on top, and the
simulator's prediction of the same run beside the measurement.

On loopback, with the wall clock running ``time_compress`` times faster than the trace:

* the controller, ``fleetwise control --mode active --actuator local``, as its own process (so it can be
  SIGKILLed and restarted: ``kill_controller_every_s``), with a SQLite store in a temporary directory;
* its workers, ``fleetwise emulate`` processes it starts and stops (``--time-scale`` = the compression);
* the replay of the trace (:func:`fleetwise.replay.areplay_trace`), routed by least outstanding tokens over
  the backends the controller's ``/api/backends`` lists (draining workers get no new requests; a worker that
  refuses a request unanswered - gone, or 503 - is routed around, as a router would);
* spot notices at ``preemption_rate_per_hour`` per spot worker-hour, in AWS's format, on the workers'
  own metadata endpoint (each worker is reclaimed at the notice's end and cuts its connections);
* a monitor that reads the process table every half second: instances by tier over time, cost (each worker
  billed from its process start to its exit at its tier's price), two processes for one slot (duplicate
  launches), and workers left that the controller does not know (orphans).

The simulated side runs :func:`fleetwise.sim.run.simulate_fleet` on the same requests, the same policy, one
worker per instance at the same prices, the same control interval, and the spot notices replayed at the
times the chaos gave them. Both sides report the keys of ``fleetwise simulate --json``.

What the emulated fleet adds that the simulator does not: each worker's process start (about
``PROCESS_START_S`` of wall time, times the compression in trace time) on top of the emulated cold start,
and HTTP in the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.traffic.records import RequestTrace

PROCESS_START_S = 1.5
"""Wall seconds from ``Popen`` of a ``fleetwise emulate`` worker to its first ``/health`` 200 on this machine
(Python start and imports; measured 1.2-1.8 s on the 2-core CI machine)."""
MONITOR_EVERY_S = 0.5
CONTROLLER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TestbedConfig:
    """One testbed run. Times are trace seconds unless the name says wall.

    Attributes:
        model, gpu, gpus, precision, engine: each worker's replica.
        offer: the instance offer whose prices (and spot price) apply; default: the cheapest on-demand.
        time_compress: the trace is replayed this many times faster; workers run ``--time-scale`` the same.
        policy: the controller's policy (hybrid, rolling, reactive), simulated under the same name.
        preemption_rate_per_hour: spot notices per spot worker-hour.
        notice_s: length of each spot notice (AWS: 120).
        kill_controller_every_s: SIGKILL the controller this often (then restart it at once); None: never.
        cold_start_s: emulated cold start of a worker, on top of its process start.
        initial_workers: on-demand workers at the start (default: sized for the trace's first five minutes).
    """

    __test__ = False  # not a pytest class

    model: str = "llama-3.1-8b"
    gpu: str = "h100"
    gpus: int = 1
    precision: str = "fp8"
    engine: str = "vllm"
    offer: str | None = None
    time_compress: float = 10.0
    policy: str = "hybrid"
    preemption_rate_per_hour: float = 0.0
    notice_s: float = 120.0
    kill_controller_every_s: float | None = None
    ttft_ms: float = 1000.0
    tpot_ms: float = 50.0
    interval_s: float = 300.0
    fast_interval_s: float = 10.0
    cold_start_s: float = 0.0
    initial_workers: int | None = None
    seed: int = 0
    keep_dir: str | None = None
    """Keep the controller's store (control.db: every decision) and log here instead of a temporary directory."""
    metrics: str = "scrape"
    """How the controller reads the workers: ``scrape`` (each worker's /metrics) or ``prometheus`` (a real
    Prometheus the testbed starts, scraping every worker each wall second through a file it keeps current)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_compress) and 0 < self.time_compress <= 100):
            raise ConfigError("the testbed's time compression must be within (0, 100]")
        if not (math.isfinite(self.preemption_rate_per_hour) and 0 <= self.preemption_rate_per_hour <= 60):
            raise ConfigError("preemption rate must be within [0, 60] per spot worker-hour")
        if self.kill_controller_every_s is not None and not self.kill_controller_every_s > 0:
            raise ConfigError("the controller kill period must be > 0 s")
        if self.metrics not in ("scrape", "prometheus"):
            raise ConfigError(f"testbed metrics must be scrape or prometheus (got '{self.metrics}')")


@dataclass
class _Chaos:
    notices: list[float] = field(default_factory=list)  # trace seconds
    restarts: int = 0
    duplicate_launches: int = 0
    seen: dict[str, list] = field(default_factory=dict)  # tag -> [tier, first trace s, last trace s]
    by_tier: list[tuple[float, dict[str, int]]] = field(default_factory=list)


def run_testbed(trace: RequestTrace, config: TestbedConfig,
                progress: Callable[[str], None] | None = None) -> dict:
    """Run the testbed (blocking) and return ``{"measured", "simulated", "gap", "chaos", "config"}``."""
    from fleetwise.sim.setup import fleet_spec, servable

    if len(trace) < 2:
        raise ConfigError("the testbed needs a trace of at least two requests")
    isl, osl = servable(trace.input_tokens, trace.output_tokens, 1 << 62)
    spec = fleet_spec(config.model, config.gpu, config.gpus, None, config.precision, engine=config.engine,
                      offer=config.offer, ttft_ms=config.ttft_ms, tpot_ms=config.tpot_ms, lengths=(isl, osl),
                      cold_start_s=config.cold_start_s + PROCESS_START_S * config.time_compress)
    spec = worker_spec(spec)
    initial = config.initial_workers or _first_window_workers(trace, spec)
    say = progress or (lambda _msg: None)
    with _work_dir(config.keep_dir) as tmp:
        say(f"testbed: {len(trace):,} requests over {trace.duration_s:,.0f} s at {config.time_compress:g}x "
            f"({trace.duration_s / config.time_compress:,.0f} s wall), {initial} worker(s) of "
            f"{spec.replica.label} to start, policy {config.policy}")
        measured, chaos, final = asyncio.run(_measure(trace, config, spec, initial, Path(tmp), say))
    say("testbed: simulating the same run")
    simulated = _simulate(trace, config, spec, initial, chaos.notices)
    return _report(config, spec, measured, simulated, chaos, final)


@contextlib.contextmanager
def _work_dir(keep: str | None):
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="fleetwise-testbed-") as tmp:
        yield tmp


def worker_spec(spec):
    """The fleet spec with one worker (one replica) per instance, at its share of the offer's prices - the
    unit the controller launches."""
    share = 1.0 / spec.replicas_per_instance
    itype = dataclasses.replace(spec.itype, engines=spec.replica.dp,
                                usd_per_hour={k: v * share for k, v in spec.itype.usd_per_hour.items()})
    return dataclasses.replace(spec, itype=itype, replicas_per_instance=1,
                               capacity_rps_per_instance=spec.capacity_rps_per_instance * share)


def _first_window_workers(trace: RequestTrace, spec) -> int:
    from fleetwise.sim.setup import instances_for
    from fleetwise.sim.strategies import SIZING_WINDOW_S

    first = trace.window(trace.start_s, trace.start_s + SIZING_WINDOW_S)
    span = min(SIZING_WINDOW_S, max(trace.duration_s, 1.0))
    return instances_for(len(first) / span, spec)


# -- the measured side ---------------------------------------------------------------------------------------
async def _measure(trace: RequestTrace, config: TestbedConfig, spec, initial: int, tmp: Path, say):
    fleet = f"tb{os.getpid()}x{random.randrange(1 << 20)}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        prom = None
        if config.metrics == "prometheus":
            from fleetwise.control.localprom import LocalPrometheus

            prom = stack.enter_context(LocalPrometheus(Path(tmp) / "prometheus"))
        argv = _controller_argv(config, spec, initial, fleet, port, Path(tmp) / "control.db",
                                f"prometheus:{prom.url}" if prom else "scrape")
        return await _run_measured(trace, config, spec, initial, Path(tmp), say, fleet, base, argv, prom)


async def _run_measured(trace, config, spec, initial, tmp, say, fleet, base, argv, prom):
    from fleetwise.control.local import LocalActuator
    from fleetwise.replay import areplay_trace

    watcher = LocalActuator(fleet=fleet)  # only reads the process table
    chaos = _Chaos()
    holder = {"proc": _start(argv, tmp)}
    t0 = time.monotonic()
    clock = lambda: (time.monotonic() - t0) * config.time_compress  # trace seconds since the replay began
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_monitor(watcher, chaos, clock, stop, prom))]
    try:
        urls = await _wait_for_backends(base, initial, holder["proc"])
        say(f"testbed: controller on {base}, {len(urls)} worker(s) serving; replaying")
        t0 = time.monotonic()
        chaos.seen.clear()
        chaos.by_tier.clear()
        if config.kill_controller_every_s:
            tasks.append(asyncio.create_task(_killer(holder, argv, tmp, config, chaos, stop)))
        if config.preemption_rate_per_hour > 0:
            tasks.append(asyncio.create_task(_preempter(base, config, chaos, clock, stop)))
        result = await areplay_trace(trace, urls, model=spec.replica.model.id, time_compress=config.time_compress,
                                     backends=lambda: _backends(base), timeout_s=600.0)
        end = clock()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        # The killer has stopped: the controller now running answers. A worker it launched in the step its
        # state shows was not in that step's observation, so the orphan check lists the processes first and
        # then waits for a step that began after the listing.
        looked = await _state(base)
        alive = {p.tag for p in watcher.processes()}
        after = (looked or {}).get("t")
        final = await _state(base, None if after is None else after + 1.5 * config.fast_interval_s)
    finally:
        _terminate(holder["proc"])
    known = {w["id"] for w in (final or {}).get("workers", [])}
    alive &= {p.tag for p in watcher.processes()}  # those that exited meanwhile are no orphans
    watcher.stop_all()
    _close_billing(chaos, end, MONITOR_EVERY_S * config.time_compress)
    final = {"orphaned": sorted(alive - known), "left_after_stop": len(watcher.processes()), "end_s": end}
    return result, chaos, final


def _controller_argv(config: TestbedConfig, spec, initial: int, fleet: str, port: int, db: Path,
                     metrics: str = "scrape") -> list[str]:
    return [sys.executable, "-m", "fleetwise", "control", "--mode", "active", "--actuator", "local",
            "--metrics", metrics,
            "--policy", config.policy, "--fleet", fleet, "--port", str(port), "--store", str(db),
            "--model", config.model, "--gpu", config.gpu, "--gpus", str(config.gpus),
            "--precision", config.precision, "--engine", config.engine, "--offer", spec.offer.id,
            "--ttft-p95-ms", f"{config.ttft_ms:g}", "--tpot-p95-ms", f"{config.tpot_ms:g}",
            "--interval", f"{config.interval_s:g}", "--fast-interval", f"{config.fast_interval_s:g}",
            "--time-scale", f"{config.time_compress:g}", "--initial", f"on_demand={initial}",
            "--cold-start-s", f"{config.cold_start_s:g}", "--keep-workers",
            # the simulated side sizes with the goodput verified on the trace's lengths: so does the controller
            "--capacity-rps", f"{spec.capacity_rps_per_instance:.6g}"]


def _start(argv: list[str], tmp: Path) -> subprocess.Popen:
    log = open(tmp / "control.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _get(url: str, timeout_s: float = 2.0):
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        resp = await client.get(url)
        resp.raise_for_status()
        return resp.json()


async def _backends(base: str) -> list[str] | None:
    data = await _get(base + "/api/backends", 1.0)
    return [b["url"] for b in data["backends"]]


async def _state(base: str, after_t: float | None = None) -> dict | None:
    """The controller's state once it has made a step (a just-restarted one has seen no workers yet), or a
    step at controlled time ``after_t`` or later (None after a minute)."""
    for _ in range(300):
        with contextlib.suppress(Exception):
            state = await _get(base + "/api/state")
            if state.get("t") is not None and (after_t is None or state["t"] >= after_t):
                return state
        await asyncio.sleep(0.2)
    return None


async def _wait_for_backends(base: str, want: int, proc: subprocess.Popen) -> list[str]:
    deadline = time.monotonic() + CONTROLLER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the controller exited at start (code {proc.returncode}); see its log")
        with contextlib.suppress(Exception):
            urls = await _backends(base)
            if urls and len(urls) >= want:
                return urls
        await asyncio.sleep(0.2)
    raise ConfigError(f"the fleet did not reach {want} serving worker(s) in {CONTROLLER_START_TIMEOUT_S:g} s")


async def _monitor(watcher, chaos: _Chaos, clock, stop: asyncio.Event, prom=None) -> None:
    """Every half second: which worker processes exist (billing, tiers over time, duplicate slots); with a
    Prometheus, its scrape targets follow them."""
    while not stop.is_set():
        procs = await asyncio.to_thread(watcher.processes)
        if prom is not None:
            prom.set_targets([f"127.0.0.1:{p.port}" for p in procs])
        now = clock()
        tags = [p.tag for p in procs]
        chaos.duplicate_launches += len(tags) - len(set(tags))
        for tag in set(tags):
            row = chaos.seen.setdefault(tag, [tag.split(".")[1], now, now])
            row[2] = now
        counts = {t: sum(1 for g in set(tags) if g.split(".")[1] == t) for t in ("reserved", "on_demand", "spot")}
        chaos.by_tier.append((now, counts))
        await asyncio.sleep(MONITOR_EVERY_S)


async def _killer(holder: dict, argv, tmp: Path, config: TestbedConfig, chaos: _Chaos, stop) -> None:
    """SIGKILL the controller every period and start a new one at once."""
    rng = random.Random(config.seed + 1)
    period = config.kill_controller_every_s / config.time_compress
    while not stop.is_set():
        await asyncio.sleep(period * rng.uniform(0.5, 1.5))  # not in phase with the controller's steps
        proc = holder["proc"]
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        holder["proc"] = _start(argv, tmp)
        chaos.restarts += 1


async def _preempter(base: str, config: TestbedConfig, chaos: _Chaos, clock, stop) -> None:
    """Spot notices as a Poisson process per serving spot worker."""
    import httpx

    rng = random.Random(config.seed)
    tick = 1.0 / config.time_compress  # one trace second
    p = 1.0 - math.exp(-config.preemption_rate_per_hour / 3600.0)
    noticed: set[str] = set()
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set():
            await asyncio.sleep(tick)
            try:
                workers = (await client.get(base + "/api/state")).json()["workers"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue  # the controller is restarting: the cloud does not wait, but we need its list
            for w in workers:
                if w["tier"] != "spot" or w["state"] != "serving" or w["id"] in noticed or rng.random() >= p:
                    continue
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(w["url"] + "/admin/interrupt", json={"notice_s": config.notice_s,
                                                                            "kind": "aws"})
                    noticed.add(w["id"])
                    chaos.notices.append(clock())


def _close_billing(chaos: _Chaos, end: float, sample_s: float) -> None:
    """A worker last seen at t ended, on average, half a sample later (never after the run's end)."""
    for row in chaos.seen.values():
        row[2] = min(row[2] + sample_s / 2, end)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the simulated side and the report --------------------------------------------------------------------------
def _simulate(trace: RequestTrace, config: TestbedConfig, spec, initial: int, notices: list[float]):
    from fleetwise.sim.core import SimConfig
    from fleetwise.sim.hybrid import Hybrid
    from fleetwise.sim.policies import Reactive
    from fleetwise.sim.requests import SimRequests, named_class
    from fleetwise.sim.rolling import Rolling
    from fleetwise.sim.run import simulate_fleet

    requests = SimRequests.from_trace(trace, (named_class("interactive", config.ttft_ms, config.tpot_ms),))
    if config.policy == "reactive":
        policy = Reactive(initial_instances=initial)
    else:
        rolling = Rolling(initial_instances=initial, period_s=config.interval_s)
        policy = rolling if config.policy == "rolling" else Hybrid(rolling)
    sim = SimConfig(control_interval_s=config.fast_interval_s, warning_s=config.notice_s, spot_availability=1.0,
                    preemption_times_s=tuple(sorted(notices)), seed=config.seed)
    return simulate_fleet(requests, spec, policy, sim)


def _cost(chaos: _Chaos, spec) -> tuple[float, dict[str, float]]:
    from fleetwise.sim.billing import billed_usd

    by_tier: dict[str, float] = {}
    prices = spec.itype.usd_per_hour
    for tier, first, last in chaos.seen.values():
        price = prices.get(tier, prices["on_demand"])
        by_tier[tier] = by_tier.get(tier, 0.0) + billed_usd(max(0.0, last - first), price)
    return sum(by_tier.values()), by_tier


def _report(config: TestbedConfig, spec, replay, simulated, chaos: _Chaos, final: dict) -> dict:
    from fleetwise.replay.compare import relative_gaps

    measured = replay.summary(config.ttft_ms, config.tpot_ms)
    cost, by_tier = _cost(chaos, spec)
    measured = {k: measured[k] for k in ("requests", "completed", "failed", "failed_by_reason",
                                         "first_error_by_reason", "rerouted", "ttft_ms", "tpot_ms", "e2e_ms",
                                         "slo_attainment", "duration_s", "goodput_rps")}
    measured |= {"cost_usd": cost, "cost_by_tier": by_tier, "instances_launched": len(chaos.seen),
                 "instances_by_tier": _timeline(chaos.by_tier)}
    sim = simulated.to_dict(timeline=True)
    sim_out = {k: sim[k] for k in ("requests", "completed", "dropped", "dropped_by_reason", "unfinished",
                                   "ttft_ms", "tpot_ms", "slo_attainment", "cost_usd", "cost_by_tier",
                                   "duration_s", "goodput_rps", "instances_launched", "preemptions")}
    sim_out["instances_launched"] = sum(sim_out["instances_launched"].values())
    sim_out["instances_by_tier"] = [{"t": row["t"], **{k: row["serving"].get(k, 0) + row["provisioning"].get(k, 0)
                                                     for k in ("reserved", "on_demand", "spot")}}
                                    for row in sim["timeline"]]
    gap = relative_gaps(measured, sim_out)
    for key in ("cost_usd", "slo_attainment"):
        m, s = measured[key], sim_out[key]
        gap[key] = (m - s) / s if s and math.isfinite(m) and math.isfinite(s) else None
    lost = measured["failed"]
    return {
        "config": dataclasses.asdict(config) | {"worker": spec.replica.label, "offer": spec.offer.id,
                                                "usd_per_worker_hour": dict(spec.itype.usd_per_hour),
                                                "simulated_cold_start_s": spec.itype.cold_start_s},
        "measured": measured, "simulated": sim_out, "gap": gap,
        "chaos": {"controller_restarts": chaos.restarts, "duplicate_launches": chaos.duplicate_launches,
                  "orphaned_workers": len(final["orphaned"]), "orphans": final["orphaned"],
                  "workers_left_after_stop": final["left_after_stop"], "lost_requests": lost,
                  "lost_by_reason": measured["failed_by_reason"], "spot_notices": len(chaos.notices),
                  "spot_notice_times_s": [round(t, 1) for t in chaos.notices]},
    }


def _timeline(rows: list[tuple[float, dict[str, int]]], step_s: float = 60.0) -> list[dict]:
    """Workers by tier, one row per ``step_s`` of trace time (the last sample in each step)."""
    out: dict[int, dict] = {}
    for t, counts in rows:
        out[int(t // step_s)] = {"t": float(np.floor(t / step_s) * step_s), **counts}
    return [out[k] for k in sorted(out)]
