"""Latency a proxy adds over a direct call, and its max sustained req/s on one core: fleetwise gateway vs LiteLLM.

Goal (the gateway issue): at 200 and 1,000 req/s, fleetwise's added p99 <= 1/3 of LiteLLM's, and fleetwise's
max sustained req/s per core >= 2x LiteLLM's.

Setup, all on loopback, all in one run:

- backend: the instant endpoint (``python -m fleetwise.replay.instant``, one uvloop process) - its answers cost
  almost nothing, so what a proxy adds is what is measured;
- fleetwise: ``fleetwise gateway --config gateway.yaml --backend bench=URL --port P`` (one process, state in
  memory; the config holds one tenant with the benchmark's API key, no budget or rate limit);
- LiteLLM: ``litellm[proxy]`` (version pinned below) in its own venv under ``~/.cache/fleetwise-bench/`` (made
  once, reused), ``--num_workers 1``, a config with one ``openai/bench`` model at the backend's ``api_base``,
  the benchmark's API key as ``master_key`` (it refuses to start without one), no database (so no spend
  logs and key checks against the master key only), ``callbacks: []``, ``num_retries: 0``,
  ``set_verbose: false``, ``disable_spend_logs``/``disable_error_logs``, env ``LITELLM_LOG=ERROR`` (no
  access log), ``LITELLM_MODE=PRODUCTION``, ``LITELLM_LOCAL_MODEL_COST_MAP=True``; server: uvicorn + uvloop
  (LiteLLM's default; ``--litellm-server granian`` tries ``--run_granian``);
- CPUs: both proxies pinned to one core (``taskset -c``), the load generator (this process) and the backend
  to another, so "per core" is the same core for both proxies. Only one proxy carries load at a time.

Load: open-loop Poisson arrivals (seed 0, the same schedule for every target), chat completions with a
one-sentence prompt and ``max_tokens`` 16, every other request streamed; no ``temperature``/``seed``, so
fleetwise's cache and single-flight never apply (every request goes upstream). Latency is E2E per request,
from handing it to the HTTP client (aiohttp, keep-alive) to the last byte of the answer (streams included).
A request that fails, times out, or finds 2,048 already in flight counts as an error.

1. Added latency: for each rate (200, 1,000 req/s) and target (direct, fleetwise, litellm): 2 s warm-up, then
   10 s measured; added p50 = proxy p50 - direct p50 and added p99 = proxy p99 - direct p99 at that rate.
2. Max sustained req/s: per proxy, a ramp of rates (1 s warm-up + 4 s each); a step passes when the achieved
   rate (OK answers / span) is >= 95% of the target, errors <= 1% and p99 <= 1 s; the result is the last rate
   that passed before the first failure. The direct path is then run at the highest rate tried, to show the
   harness itself kept up there (if it did not, the proxy's figure is a lower bound).

``--json`` prints one object: ``fleetwise_p50_ms``/``_p99_ms`` and ``litellm_p50_ms``/``_p99_ms`` are the
*added* latencies at 1,000 req/s (``*_at_200rps`` at 200), ``fleetwise_max_rps``/``litellm_max_rps`` the max
sustained rates, and ``details`` everything else.

Usage: python benchmarks/gateway_overhead.py [--json] [--quick] [--no-litellm] [--litellm-venv DIR]
       [--litellm-server uvicorn|granian]
``--quick``: a smoke run (1 s windows, ramp 400-1,600 req/s without bisection; LiteLLM only if its venv already
exists): ~16 s without LiteLLM, ~50 s with it (its start-up and backlogs). A full run takes ~4-5 minutes (plus
~2 minutes, once, to make LiteLLM's venv).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LITELLM_VERSION = "1.108.7"
DEFAULT_VENV = Path.home() / ".cache" / "fleetwise-bench" / "litellm-venv"
MODEL = "bench"
MAX_TOKENS = 16
PROMPT = "Write one short sentence about the sea."
MAX_IN_FLIGHT = 2048
PASS_ACHIEVED = 0.95
PASS_ERRORS = 0.01
PASS_P99_S = 1.0
LITELLM_ENV = {"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@dataclass(frozen=True)
class Plan:
    """How long and at which rates to measure."""

    rates: tuple[float, ...] = (200.0, 1000.0)
    warmup_s: float = 2.0
    measure_s: float = 10.0
    timeout_s: float = 10.0
    ramp_start_rps: float = 25.0
    ramp_max_rps: float = 12_800.0
    ramp_refine: int = 3  # bisection steps between the last rate that passed and the first that failed
    ramp_warmup_s: float = 1.0
    ramp_measure_s: float = 4.0
    ramp_timeout_s: float = 5.0


QUICK = Plan(warmup_s=0.3, measure_s=1.0, timeout_s=3.0, ramp_start_rps=400.0, ramp_max_rps=1600.0, ramp_refine=0,
             ramp_warmup_s=0.3, ramp_measure_s=1.0, ramp_timeout_s=2.0)


@dataclass
class Window:
    """One target at one rate: the measured requests' outcome."""

    target: str
    rate_rps: float
    sent: int
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    stream_p50_ms: float
    whole_p50_ms: float
    offered_rps: float  # the measured arrivals' own rate (a Poisson draw around rate_rps)
    achieved_rps: float  # OK answers per second, from the first measured arrival to the last answer
    lag_p99_ms: float
    proxy_cpu_share: float | None  # CPU-seconds of the proxy per wall second (1.0 = one full core)
    other_cpu_share: float | None  # the proxies' core busy with anything else (other processes on the machine)
    passed: bool = False

    @property
    def error_share(self) -> float:
        return self.errors / max(self.sent, 1)


# -- processes --------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(cmd: list[str], cpu: int | None) -> tuple[list[str], object]:
    """``cmd`` run on CPU ``cpu``: through ``taskset -c`` when it exists, else ``sched_setaffinity``."""
    if cpu is None:
        return cmd, None
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd], None
    return cmd, lambda: os.sched_setaffinity(0, {cpu})


@dataclass
class Proc:
    """A server subprocess in its own process group (so its children stop with it)."""

    name: str
    cmd: list[str]
    port: int
    popen: subprocess.Popen | None = None
    log: object = None
    cpu: int | None = None
    env: dict | None = None

    def start(self, cpu: int | None, env: dict | None = None) -> Proc:
        self.cpu, self.env = cpu, env
        cmd, pre = _pinned(self.cmd, cpu)
        if self.log is not None:
            self.log.close()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed on the next start, or with the process
        self.popen = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True, preexec_fn=pre)  # noqa: PLW1509 - no threads yet
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def cpu_s(self) -> float:
        """CPU seconds used so far by every live process of the group."""
        pgid, total = self.popen.pid, 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # fields[0] is field 3 (state): pgrp is field 5
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL")}
    return env | (extra or {})


# -- LiteLLM ----------------------------------------------------------------------------------------------------
def _venv_version(venv: Path) -> str | None:
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    got = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, timeout=60, check=False)
    return got.stdout.strip() or None if got.returncode == 0 else None


def ensure_litellm(venv: Path, create: bool) -> str | None:
    """The LiteLLM version in ``venv``; made with ``pip install 'litellm[proxy]==VERSION'`` when absent (and
    ``create``). None when there is none."""
    version = _venv_version(venv)
    if version == LITELLM_VERSION or (version and not create):
        return version
    if not create:
        return None
    if version:
        print(f"gateway_overhead: {venv} holds litellm {version}, not {LITELLM_VERSION}: rebuilding it",
              file=sys.stderr)
        shutil.rmtree(venv)
    partial = venv.with_name(venv.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    print(f"gateway_overhead: making {venv} with litellm[proxy]=={LITELLM_VERSION} (once; ~2 min)",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(partial)], check=True)
    subprocess.run([str(partial / "bin" / "python"), "-m", "pip", "install", "-q",
                    f"litellm[proxy]=={LITELLM_VERSION}"], check=True, env=_clean_env())
    partial.rename(venv)  # the venv is only ever used as `bin/python -m ...`, so its scripts' paths don't matter
    return _venv_version(venv)


def litellm_config(backend_url: str) -> str:
    """LiteLLM's config: one OpenAI-compatible model at the backend; a master key, no DB, no callbacks, no
    retries."""
    return "\n".join([
        "model_list:",
        f"  - model_name: {MODEL}",
        "    litellm_params:",
        f"      model: openai/{MODEL}",
        f"      api_base: {backend_url}/v1",
        "      api_key: sk-bench",
        "litellm_settings:",
        "  set_verbose: false",
        "  json_logs: false",
        "  callbacks: []",
        "  num_retries: 0",
        "  request_timeout: 30",
        "general_settings:",
        f"  master_key: {API_KEY}",
        "  disable_spend_logs: true",
        "  disable_error_logs: true",
        ""])


def fleetwise_config() -> str:
    """fleetwise's config: one tenant holding the benchmark's key (no budget, no rate limit)."""
    return f"tenants:\n  - {{name: bench, api_keys: [{API_KEY}]}}\n"


def litellm_proc(venv: Path, cfg_path: Path, server: str) -> Proc:
    port = _free_port()
    cmd = [str(venv / "bin" / "python"), "-m", "litellm.proxy.proxy_cli", "--config", str(cfg_path),
           "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    if server == "granian":
        cmd.append("--run_granian")
    return Proc("litellm", cmd, port)


def _core_busy_s(core: int) -> float:
    """CPU seconds core ``core`` has spent busy (not idle or waiting on I/O) since boot."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return float("nan")


class Meter:
    """CPU over a span: the proxy's own, and the rest of its core's busy time (anything else running there)."""

    def __init__(self, proc: Proc | None, core: int | None) -> None:
        self.proc, self.core = proc, core
        self.t0 = self.proc0 = self.core0 = None

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.proc0 = self.proc.cpu_s() if self.proc else 0.0
        self.core0 = _core_busy_s(self.core) if self.core is not None else None

    def stop(self) -> tuple[float | None, float | None]:
        if self.t0 is None:
            return None, None
        wall = max(time.perf_counter() - self.t0, 1e-9)
        own = (self.proc.cpu_s() - self.proc0) / wall if self.proc else None
        if self.core0 is None:
            return own, None
        busy = (_core_busy_s(self.core) - self.core0) / wall
        return own, max(0.0, busy - (own or 0.0))


# -- load -------------------------------------------------------------------------------------------------------
def _bodies() -> tuple[bytes, bytes]:
    base = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    return json.dumps(base).encode(), json.dumps(base | {"stream": True}).encode()


BODIES = _bodies()
API_KEY = "sk-" + secrets.token_hex(32)  # both proxies check it: LiteLLM as its master key, fleetwise as a tenant's
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}


def _arrivals(rate: float, span_s: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, int(rate * span_s * 1.2) + 16))
    return t[t < span_s]


async def _one(session, url: str, stream: bool, timeout) -> bool:
    async with session.post(url, data=BODIES[stream], headers=HEADERS, timeout=timeout) as resp:
        data = await resp.read()  # to the last byte: for a stream, after `data: [DONE]`
    return resp.status == 200 and (b"[DONE]" in data[-32:] if stream else b'"choices"' in data)


async def run_window(session, target: str, url: str, rate: float, warmup_s: float, measure_s: float,
                     timeout_s: float, proc: Proc | None, core: int | None) -> Window:
    """Open-loop Poisson load on ``url`` for warm-up + measure seconds; the measured requests' figures."""
    import aiohttp

    arrivals = _arrivals(rate, warmup_s + measure_s)
    n = len(arrivals)
    lat, sent_at, done_at = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    loop = asyncio.get_running_loop()
    in_flight = 0

    async def send(i: int) -> None:
        nonlocal in_flight
        in_flight += 1
        t0 = sent_at[i] = time.perf_counter()
        try:
            ok[i] = await _one(session, url, bool(i % 2), timeout)
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok[i] = False
        finally:
            done_at[i] = time.perf_counter()
            lat[i] = done_at[i] - t0
            in_flight -= 1

    gc.collect()
    gc.disable()
    tasks = []
    start = time.perf_counter()
    meter = Meter(proc, core)
    for i, a in enumerate(arrivals):
        delay = start + a - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if meter.t0 is None and a >= warmup_s:
            meter.start()
        if in_flight >= MAX_IN_FLIGHT:
            sent_at[i] = time.perf_counter()  # dropped by the client: an error
            continue
        tasks.append(loop.create_task(send(i)))
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s + 2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    share = meter.stop()  # over the measured part and its drain
    gc.enable()
    return _summarize(target, rate, arrivals, start, warmup_s, lat, sent_at, done_at, ok, timeout_s, share)


def _summarize(target, rate, arrivals, start, warmup_s, lat, sent_at, done_at, ok, timeout_s, share) -> Window:
    m = arrivals >= warmup_s
    good = m & ok
    # a failed request counts at the timeout (a lower bound), so errors push the tail up, never down
    all_ms = np.where(good, lat, timeout_s)[m] * 1e3
    streamed = (np.arange(len(arrivals)) % 2 == 1)
    span = (np.nanmax(done_at[good]) - (start + arrivals[m][0])) if good.any() else float("nan")
    offered_span = arrivals[m][-1] - arrivals[m][0] if m.sum() > 1 else float("nan")
    lag_ms = (sent_at[m] - (start + arrivals[m])) * 1e3
    return Window(target, rate, int(m.sum()), int(good.sum()), int(m.sum() - good.sum()),
                  _pct(all_ms, 50), _pct(all_ms, 99), _pct(lat[good & streamed] * 1e3, 50),
                  _pct(lat[good & ~streamed] * 1e3, 50),
                  float((m.sum() - 1) / offered_span) if offered_span > 0 else float("nan"),
                  float((good.sum() - 1) / span) if span > 0 else 0.0,
                  _pct(lag_ms, 99), *share)


def _pct(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if len(x) else float("nan")


def passes(w: Window) -> bool:
    return (w.achieved_rps >= PASS_ACHIEVED * w.offered_rps and w.error_share <= PASS_ERRORS
            and w.p99_ms <= PASS_P99_S * 1e3)


async def wait_ready(session, proc: Proc, deadline_s: float) -> None:
    """Until one completion comes back 200 (the server has started and reaches the backend)."""
    import aiohttp

    end = time.monotonic() + deadline_s
    timeout = aiohttp.ClientTimeout(total=5)
    url = proc.url + "/v1/chat/completions"
    while time.monotonic() < end:
        if proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}):\n{proc.output()}")
        try:
            if await _one(session, url, False, timeout) and await _one(session, url, True, timeout):
                return
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{proc.name} did not answer within {deadline_s:.0f} s:\n{proc.output()}")


async def settle(session, url: str, limit_s: float = 15.0) -> None:
    """Wait until the target is idle again: a lone request answers in under 50 ms (a backlog is drained)."""
    import aiohttp

    end = time.monotonic() + limit_s
    timeout = aiohttp.ClientTimeout(total=5)
    while time.monotonic() < end:
        t0 = time.perf_counter()
        try:
            if await _one(session, url, False, timeout) and time.perf_counter() - t0 < 0.05:
                break
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.1)


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """Everything measured; ``pairs`` maps (proxy, rate) to the indexes of its window and of the direct window
    measured just before it, the baseline of its added latency."""

    latency: list[Window] = field(default_factory=list)
    pairs: dict[tuple[str, float], tuple[int, int]] = field(default_factory=dict)
    ramps: dict[str, list[Window]] = field(default_factory=dict)
    max_rps: dict[str, float | None] = field(default_factory=dict)
    harness_check: Window | None = None
    notes: list[str] = field(default_factory=list)


def _cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


@dataclass
class Bench:
    """The targets, their HTTP sessions and the proxies' core, shared by every measurement."""

    plan: Plan
    urls: dict[str, str]  # target -> completions URL
    procs: dict[str, Proc]  # proxy -> its process
    core: int | None
    say: object
    sessions: dict = field(default_factory=dict)
    run: Run = field(default_factory=Run)

    async def window(self, name: str, rate: float, ramp: bool = False) -> Window:
        """Quiet every proxy, then one window of load on ``name``."""
        p = self.plan
        await self.quiet()
        await settle(self.sessions[name], self.urls[name])
        warm, meas, timeout = ((p.ramp_warmup_s, p.ramp_measure_s, p.ramp_timeout_s) if ramp
                               else (p.warmup_s, p.measure_s, p.timeout_s))
        w = await run_window(self.sessions[name], name, self.urls[name], rate, warm, meas, timeout,
                             self.procs.get(name), self.core)
        w.passed = passes(w)
        return w

    async def quiet(self, limit_s: float = 20.0) -> None:
        """Until every proxy is idle (< 5% of a core over 0.25 s): an overloaded one may still be working off a
        backlog its clients gave up on. One still busy after ``limit_s`` is restarted."""
        for name, proc in self.procs.items():
            end = time.monotonic() + limit_s
            while True:
                meter = Meter(proc, None)
                meter.start()
                await asyncio.sleep(0.25)
                if meter.stop()[0] < 0.05:
                    break
                if time.monotonic() > end:
                    self.say(f"{name} still busy after {limit_s:.0f} s: restarting it")
                    self.run.notes.append(f"{name} was restarted after an overload (still busy {limit_s:.0f} s on)")
                    proc.stop()
                    proc.start(proc.cpu, proc.env)
                    await wait_ready(self.sessions[name], proc, 90.0)
                    end = time.monotonic() + limit_s


async def measure(bench: Bench) -> Run:
    """Added latency (fleetwise, then LiteLLM, each after its own direct baseline), the ramps, the harness
    check. LiteLLM's latency windows come last: at rates it cannot sustain they leave it with a backlog."""
    import aiohttp

    run, say = bench.run, bench.say
    bench.sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) for name in bench.urls}
    try:
        for name, proc in bench.procs.items():
            await wait_ready(bench.sessions[name], proc, 90.0)
        await latency(bench, "fleetwise")
        for name in bench.procs:
            run.ramps[name], run.max_rps[name] = await ramp(bench, name)
        highest = max((w.rate_rps for steps in run.ramps.values() for w in steps), default=0.0)
        if highest:
            run.harness_check = w = await bench.window("direct", highest, ramp=True)
            say(f"harness   direct    {highest:6,.0f} req/s: {'kept up' if w.passed else 'did NOT keep up'}")
        if "litellm" in bench.procs:
            await latency(bench, "litellm")
    finally:
        for session in bench.sessions.values():
            await session.close()
    return run


async def latency(bench: Bench, proxy: str) -> None:
    for rate in bench.plan.rates:
        for name in ("direct", proxy):
            w = await bench.window(name, rate)
            bench.run.latency.append(w)
            bench.say(f"latency   {name:9} {rate:6,.0f} req/s: p50 {w.p50_ms:.2f} ms, p99 {w.p99_ms:.2f} ms, "
                      f"errors {w.errors}, proxy cpu {w.proxy_cpu_share or 0:.2f}, other {w.other_cpu_share or 0:.2f}")
        n = len(bench.run.latency)
        bench.run.pairs[(proxy, rate)] = (n - 1, n - 2)


async def ramp(bench: Bench, name: str) -> tuple[list[Window], float | None]:
    """Double the rate until a step fails, then bisect between the last pass and that failure."""
    plan, steps = bench.plan, []
    passed, failed = None, None

    async def step(rate: float) -> bool:
        w = await bench.window(name, rate, ramp=True)
        steps.append(w)
        bench.say(f"ramp      {name:9} {rate:6,.0f} req/s: achieved {w.achieved_rps:,.0f}, p99 {w.p99_ms:.1f} ms, "
                  f"errors {w.errors}, cpu {w.proxy_cpu_share or 0:.2f}, other {w.other_cpu_share or 0:.2f} -> "
                  f"{'pass' if w.passed else 'FAIL'}")
        return w.passed

    rate = plan.ramp_start_rps
    while rate <= plan.ramp_max_rps:
        if not await step(rate):
            failed = rate
            break
        passed, rate = rate, rate * 2
    if failed is None:
        bench.run.notes.append(f"{name}: every ramp step passed, up to the cap of {plan.ramp_max_rps:,.0f} req/s: "
                               "its max is at least that")
    for _ in range(plan.ramp_refine):
        if passed is None or failed is None:
            break
        mid = float(round((passed + failed) / 2))
        if await step(mid):
            passed = mid
        else:
            failed = mid
    return steps, passed


# -- reporting --------------------------------------------------------------------------------------------------
def figures(run: Run, meta: dict) -> dict:
    out: dict = {}
    for proxy in ("fleetwise", "litellm"):
        for rate in meta["rates"]:
            pair = run.pairs.get((proxy, rate))
            w, d = (run.latency[pair[0]], run.latency[pair[1]]) if pair else (None, None)
            suffix = f"_at_{rate:.0f}rps"
            out[f"{proxy}_p50_ms{suffix}"] = round(w.p50_ms - d.p50_ms, 3) if w else None
            out[f"{proxy}_p99_ms{suffix}"] = round(w.p99_ms - d.p99_ms, 3) if w else None
        top = f"_at_{max(meta['rates']):.0f}rps"
        out[f"{proxy}_p50_ms"], out[f"{proxy}_p99_ms"] = out[f"{proxy}_p50_ms{top}"], out[f"{proxy}_p99_ms{top}"]
        out[f"{proxy}_max_rps"] = run.max_rps.get(proxy)
    hc = run.harness_check
    out["details"] = meta | {
        "harness_kept_up_at_rps": hc.rate_rps if hc and hc.passed else None,
        "goals": goals(out, meta["rates"]),
        "latency": [asdict(w) | {"baseline": next((j for (i, j) in run.pairs.values() if i == k), None)}
                    for k, w in enumerate(run.latency)],
        "ramps": {k: [asdict(w) for w in v] for k, v in run.ramps.items()},
        "harness_check": asdict(hc) if hc else None,
        "notes": run.notes}
    return out


def goals(out: dict, rates) -> dict:
    g = {}
    for rate in rates:
        f, lt = out.get(f"fleetwise_p99_ms_at_{rate:.0f}rps"), out.get(f"litellm_p99_ms_at_{rate:.0f}rps")
        g[f"added_p99_le_third_of_litellm_at_{rate:.0f}rps"] = (f <= lt / 3) if f is not None and lt else None
    f, lt = out.get("fleetwise_max_rps"), out.get("litellm_max_rps")
    g["max_rps_ge_2x_litellm"] = (f >= 2 * lt) if f is not None and lt else None
    return g


def _ms(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:,.2f}"


def _pct_cell(x) -> str:
    return "" if x is None else f"{x:.0%}"


def print_table(fig: dict) -> None:
    d = fig["details"]
    print(f"Gateway overhead: {d['request']}; {d['pinning']}\nLiteLLM: {d['litellm']}\n")
    print("| rate | target | p50 | p99 | added p50 | added p99 | stream p50 | whole p50 | ok / sent | proxy CPU | "
          "other CPU on its core |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in d["latency"]:
        base = d["latency"][w["baseline"]] if w["baseline"] is not None else None
        flag = " (saturated)" if not w["passed"] and w["target"] != "direct" else ""
        cells = [f"{w['rate_rps']:,.0f}/s", w["target"] + flag, f"{_ms(w['p50_ms'])} ms", f"{_ms(w['p99_ms'])} ms",
                 f"{_ms(w['p50_ms'] - base['p50_ms'])} ms" if base else "",
                 f"{_ms(w['p99_ms'] - base['p99_ms'])} ms" if base else "",
                 f"{_ms(w['stream_p50_ms'])} ms", f"{_ms(w['whole_p50_ms'])} ms", f"{w['ok']:,} / {w['sent']:,}",
                 _pct_cell(w["proxy_cpu_share"]), _pct_cell(w["other_cpu_share"])]
        print("| " + " | ".join(cells) + " |")
    print("\nMax sustained req/s on one core (step: achieved req/s, p99, errors, proxy CPU, other CPU on its core):")
    for name, steps in d["ramps"].items():
        trail = ", ".join(f"{s['rate_rps']:,.0f}{'' if s['passed'] else ' FAIL'} ({s['achieved_rps']:,.0f}, "
                          f"{s['p99_ms']:,.1f} ms, {s['errors']}, {_pct_cell(s['proxy_cpu_share'])}, "
                          f"{_pct_cell(s['other_cpu_share'])})" for s in steps)
        best = fig[f"{name}_max_rps"]
        print(f"- {name}: **{best:,.0f} req/s** - {trail}" if best else f"- {name}: none passed - {trail}")
    hc = d["harness_check"]
    if hc:
        print(f"- harness (direct) at {hc['rate_rps']:,.0f} req/s: {'kept up' if hc['passed'] else 'did NOT keep up'}"
              f" (achieved {hc['achieved_rps']:,.0f}, p99 {hc['p99_ms']:.1f} ms, {hc['errors']} errors)")
    print("\nGoals: " + "; ".join(f"{k}: {'yes' if v else 'NO' if v is not None else 'n/a'}"
                                  for k, v in d["goals"].items()))
    for note in d["notes"]:
        print(f"note: {note}")
    print(f"\ncommand: {d['command']}  ({d['wall_s']:.0f} s)")


# -- main -------------------------------------------------------------------------------------------------------
def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="Print one JSON object.")
    p.add_argument("--quick", action="store_true", help="~30 s smoke run; LiteLLM only if its venv exists.")
    p.add_argument("--no-litellm", action="store_true", help="Skip LiteLLM.")
    p.add_argument("--litellm-venv", type=Path, default=DEFAULT_VENV, help="Where LiteLLM's venv lives.")
    p.add_argument("--litellm-server", choices=("uvicorn", "granian"), default="uvicorn")
    return p.parse_args()


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536,) * 2)


def main() -> int:
    args = _args()
    wall0 = time.perf_counter()
    plan = QUICK if args.quick else Plan()
    notes: list[str] = []
    version = None
    if not args.no_litellm:
        version = ensure_litellm(args.litellm_venv, create=not args.quick)
        if version is None:
            notes.append(f"LiteLLM skipped: no venv at {args.litellm_venv} (a full run makes it)")
    elif args.no_litellm:
        notes.append("LiteLLM skipped (--no-litellm)")
    proxy_cpu, load_cpu = _cpus()
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})
    else:
        notes.append("fewer than 2 CPUs: nothing pinned")
    _raise_nofile()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True))
    procs: list[Proc] = []
    tmp = tempfile.TemporaryDirectory(prefix="gateway-overhead-")
    try:
        backend = Proc("backend", [sys.executable, "-m", "fleetwise.replay.instant", "--port", "0"], 0)
        backend.port = _free_port()
        backend.cmd[-1] = str(backend.port)
        procs.append(backend.start(load_cpu))
        fw_cfg = Path(tmp.name, "gateway.yaml")
        fw_cfg.write_text(fleetwise_config())
        fw = Proc("fleetwise", [sys.executable, "-m", "fleetwise", "gateway", "--config", str(fw_cfg),
                                "--backend", f"{MODEL}={backend.url}", "--port", "0"], _free_port())
        fw.cmd[-1] = str(fw.port)
        procs.append(fw.start(proxy_cpu))
        path = "/v1/chat/completions"
        urls, proxies = {"direct": backend.url + path, "fleetwise": fw.url + path}, {"fleetwise": fw}
        if version:
            cfg = Path(tmp.name, "litellm.yaml")
            cfg.write_text(litellm_config(backend.url))
            ll = litellm_proc(args.litellm_venv, cfg, args.litellm_server)
            procs.append(ll.start(proxy_cpu, _clean_env(LITELLM_ENV)))
            urls["litellm"], proxies["litellm"] = ll.url + path, ll
        _wait_listening(backend)
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        run = runner(measure(Bench(plan, urls, proxies, proxy_cpu, say)))
    finally:
        for proc in reversed(procs):
            proc.stop()
        tmp.cleanup()
    run.notes.extend(notes)
    meta = _meta(args, plan, version, proxy_cpu, load_cpu, list(urls), wall0)
    fig = figures(run, meta)
    if args.json:
        print(json.dumps(fig, indent=2))
    else:
        print_table(fig)
    return 0


def _wait_listening(proc: Proc, limit_s: float = 20.0) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", proc.port), timeout=0.2).close()
            return
        except OSError:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.output()}") from None
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen within {limit_s:.0f} s")


def _meta(args, plan: Plan, version, proxy_cpu, load_cpu, targets, wall0) -> dict:
    pinning = (f"proxies pinned to CPU {proxy_cpu}, load generator + backend to CPU {load_cpu} "
               f"({'taskset -c' if shutil.which('taskset') else 'sched_setaffinity'})" if proxy_cpu is not None
               else "not pinned")
    litellm = (f"litellm[proxy]=={version}, --num_workers 1, server {args.litellm_server}, "
               f"env {' '.join(f'{k}={v}' for k, v in LITELLM_ENV.items())}, master_key, no DB, callbacks [], "
               "num_retries 0, disable_spend_logs, disable_error_logs" if version else "skipped")
    return {"command": "python benchmarks/gateway_overhead.py " + shlex.join(sys.argv[1:]),
            "wall_s": time.perf_counter() - wall0, "rates": list(plan.rates), "plan": asdict(plan),
            "request": (f"chat completions, {len(PROMPT.split())}-word prompt, max_tokens {MAX_TOKENS}, every other "
                        f"one streamed, open-loop Poisson; latency = E2E to the last byte"),
            "pinning": pinning, "litellm": litellm, "litellm_version": version,
            "targets": targets, "python": sys.version.split()[0], "cpus": os.cpu_count()}


if __name__ == "__main__":
    raise SystemExit(main())
