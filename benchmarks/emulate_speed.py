"""How much load one emulator process carries: concurrent streams, short-request rate, added latency.

The emulated worker (llama-3.1-8b, FP8, 1x H100, vLLM profile: batch cap 1024) runs in its own process -
``fleetwise emulate``'s :func:`fleetwise.emulate.run` started with ``python -c`` so that it can also print its
engine's counters (``lag_resets``, steps) on SIGUSR1 - and the load generator runs in this process, so the
machine's cores are split as in production. Everything binds 127.0.0.1, every phase is bounded in requests
and time, and the emulator is stopped at the end (also on Ctrl-C or SIGTERM).

Load generator: an open-loop client on uvloop speaking HTTP/1.1 straight over ``asyncio.Protocol`` (keep-alive,
Content-Length and chunked bodies, SSE token events counted as they arrive), with its garbage collector held
off during a load (a full collection here would stall it ~60 ms and be charged to the emulator). Not httpx:
at ~25k SSE events/s or thousands of requests/s its pure-Python h11 needs more than the client's core, and the
figures would be the client's. Not wrk: Debian's wrk is closed-loop (it cannot hold an arrival rate, so it
hides queueing) and cannot time single SSE events. The client's CPU is reported next to the emulator's.

The model's side of every comparison is the engine itself on a virtual clock: the same requests, arriving
when the client wrote them plus the worker's frontend latency, scheduled by
:class:`~fleetwise.emulate.engine.EmulatedEngine` with no real time passing (as ``tests/emulate/test_engine.py``
drives it; it equals the simulator). So "overhead" is measured minus what the step model says for that very
request, its queueing behind the others included.

Phases (the default run takes about two minutes):

1. ``streams``: ``--streams`` (1,000) streamed completions opened at once, each on its own connection, prompt
   of ``--stream-isl`` (128) token ids, ``--stream-osl`` (300) output tokens with ``ignore_eos``, at
   ``--stream-time-scale`` (1: an H100's own speed, ~25k tokens/s at this batch). Checks that every stream
   ends with ``[DONE]`` with exactly ``--stream-osl`` token events and usage; reports tokens/s, TTFT, TPOT
   and ITL next to the model's, and the token delay: a token's arrival minus the model's time for it. The
   engine keeps an absolute schedule, so an overloaded process shows as delayed tokens, and as ``lag_resets``
   when it gives up catching up. The streams are identical and written within ~10 ms, and the emulator reads
   them in its own order, so the k-th stream to get its first token is held to the model's k-th.
   PASS: all complete and exact, no lag reset, mean TPOT within 10% of the model's, token delay p99 <= 100 ms.
2. ``rates``: short non-streamed completions (16 token ids, max_tokens uniform in 1..4, ``ignore_eos``) with
   Poisson arrivals at each of ``--rates`` for ``--rate-duration`` (5) s, stopping at the first rate not
   sustained: every request answered 200 with its token count, and overhead p99 <= ``--p99-slack-ms`` (50).
   PASS: sustained at 500 req/s. (Past ~3,000 req/s the modelled H100 itself queues: see the model columns.)
3. ``latency``: the same short requests at ``--latency-rate`` (100) req/s for ``--latency-duration`` (10) s;
   the emulator's added latency (HTTP + event loop) is each request's client latency minus the model's.

Usage: python benchmarks/emulate_speed.py [--only streams,rates,latency] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import fcntl
import gc
import json
import os
import re
import resource
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

HOST = "127.0.0.1"
MODEL = {"model": "llama-3.1-8b", "gpu": "h100", "gpus": 1, "precision": "fp8", "engine": "vllm"}
SERVER_SCRIPT = r"""
import asyncio, json, signal, sys
from fleetwise.emulate import EmulatorConfig, ServeOptions, run

def stats(fleet):
    e = fleet.workers[0].engine
    return {"lag_resets": e.lag_resets, "steps": e.steps, "busy_s": e.busy_s}

def started(fleet):
    print("url", fleet.urls[0], file=sys.stderr, flush=True)
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: print(json.dumps(stats(fleet)), flush=True))

fleet = run(EmulatorConfig(**json.loads(sys.argv[1])), ServeOptions(ports=(0,)), started)
print(json.dumps(stats(fleet)), flush=True)
"""
USAGE_RE = re.compile(rb'"completion_tokens":(\d+)')
TOKEN_MARK = b'"finish_reason":null'
SIZE_LINE, DATA_CRLF, LAST_CRLF = -1, -2, -3  # chunked decoder states; >= 0: bytes of chunk data left


# -- the emulator process ----------------------------------------------------------------------------------
class Emulator:
    """One emulator process on a free loopback port; a context manager that always stops it."""

    def __init__(self, time_scale: float) -> None:
        self.config = {**MODEL, "time_scale": time_scale}
        self.argv = [sys.executable, "-c", SERVER_SCRIPT, json.dumps(self.config)]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def command(self) -> str:
        c = self.config
        cli = (f"fleetwise emulate --port 0 --model {c['model']} --gpu {c['gpu']} --gpus {c['gpus']} --precision "
               f"{c['precision']} --engine {c['engine']} --time-scale {c['time_scale']:g}")
        return (f"python -c \"$SERVER_SCRIPT\" {shlex.quote(json.dumps(c))} (SERVER_SCRIPT in "
                f"benchmarks/emulate_speed.py: {cli}, plus the engine's counters on SIGUSR1)")

    def __enter__(self) -> Emulator:  # noqa: PYI034
        # stderr goes to a file: a pipe nobody reads would block the emulator once it filled. Append mode:
        # the emulator's writes land at the end whatever offset our reads leave (the two share it).
        self.log = tempfile.TemporaryFile("w+")
        fd = self.log.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.1)
            m = re.search(r"^url (\S+)$", self._log(), re.MULTILINE)
            if m:
                self.url = m.group(1)
                return self
        log = self._log()
        self.__exit__()
        sys.exit(f"emulate_speed: the emulator did not start: {log[-2000:]}")

    def _log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def cpu_s(self) -> float:
        """User + system CPU seconds the emulator process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict:
        """The engine's counters (lag resets, steps, busy emulated seconds)."""
        self.proc.send_signal(signal.SIGUSR1)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the emulator did not answer (exit code {self.proc.poll()}): {self._log()[-2000:]}")
        return json.loads(line)

    def __exit__(self, *exc) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)  # a graceful stop, as Ctrl-C on `fleetwise emulate`
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            self.log.close()


class CpuMeter:
    """CPU use over a phase, in % of one core: the emulator's, this client's, and the rest of the machine (other
    processes, and interrupt time such as loopback TCP): other load shares the cores and slows the emulator,
    worth knowing when a figure looks off."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.start = (self._machine_busy_s(), emu.cpu_s(), time.process_time(), time.perf_counter())

    @staticmethod
    def _machine_busy_s() -> float:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def stop(self) -> dict:
        machine, server, client, wall = (b - a for a, b in zip(self.start, (
            self._machine_busy_s(), self.emu.cpu_s(), time.process_time(), time.perf_counter())))
        return {"emulator_cpu_pct": 100 * server / wall, "client_cpu_pct": 100 * client / wall,
                "other_cpu_pct": max(0.0, 100 * (machine - server - client) / wall)}


# -- a minimal HTTP/1.1 client -----------------------------------------------------------------------------
@dataclass
class Result:
    """One request as the client saw it (perf_counter seconds)."""

    t_write: float = 0.0
    t_done: float = float("nan")
    status: int = 0
    tokens: int = 0  # SSE token events, or usage.completion_tokens of a plain response
    usage_tokens: int = -1
    done_marker: bool = False
    error: str = ""
    token_times: list = field(default_factory=list)  # streams: (arrival time, token events in that read)


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; parses the response as it arrives."""

    def __init__(self) -> None:
        self.transport = None
        self.closed = False
        self.waiter: asyncio.Future | None = None
        self.res: Result | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.res is not None and self.waiter is not None and not self.waiter.done():
            self.res.error = "connection lost"
            self.waiter.set_result(self.res)

    def send(self, raw: bytes, res: Result, stream: bool) -> asyncio.Future:
        self.res, self.stream = res, stream
        self.head, self.body = bytearray(), bytearray()
        self.in_head, self.chunked, self.length, self.chunk_left = True, False, 0, SIZE_LINE
        self.carry = bytearray()
        self.waiter = asyncio.get_running_loop().create_future()
        res.t_write = time.perf_counter()
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.in_head:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end]).lower()
            data = bytes(self.head[end + 4:])
            self.in_head = False
            self.res.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head
            if not self.chunked:
                m = re.search(rb"content-length: *(\d+)", head)
                self.length = int(m.group(1)) if m else 0
        if self.chunked:
            self._chunked(data, now)
        else:
            self.body += data
            if len(self.body) >= self.length:
                self._finish(now)

    def _chunked(self, data: bytes, now: float) -> None:
        buf = self.carry
        buf += data
        pos, pieces = 0, []
        while True:
            state = self.chunk_left
            if state == SIZE_LINE or state == LAST_CRLF:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if state == LAST_CRLF:
                    self._events(b"".join(pieces), now)
                    self._finish(now)
                    return
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                pos = eol + 2
                self.chunk_left = size if size else LAST_CRLF
            elif state == DATA_CRLF:
                if len(buf) - pos < 2:
                    break
                pos += 2
                self.chunk_left = SIZE_LINE
            else:
                take = min(state, len(buf) - pos)
                if take == 0:
                    break
                pieces.append(bytes(buf[pos:pos + take]))
                pos += take
                self.chunk_left = state - take or DATA_CRLF
        del buf[:pos]
        self._events(b"".join(pieces), now)

    def _events(self, data: bytes, now: float) -> None:
        if not data:
            return
        self.body += data
        last = self.body.rfind(b"\n\n")
        if last < 0:
            return
        block = bytes(self.body[:last + 2])
        del self.body[:last + 2]
        k = block.count(TOKEN_MARK)
        if k:
            self.res.tokens += k
            self.res.token_times.append((now, k))
        if b"data: [DONE]" in block:
            self.res.done_marker = True
        m = USAGE_RE.search(block)
        if m:
            self.res.usage_tokens = int(m.group(1))

    def _finish(self, now: float) -> None:
        res = self.res
        res.t_done = now
        if not self.stream and res.status == 200:
            m = USAGE_RE.search(bytes(self.body))
            res.tokens = res.usage_tokens = int(m.group(1)) if m else -1
        elif res.status != 200:
            res.error = f"HTTP {res.status}: {bytes(self.body)[:200]!r}"
        self.res = None
        if not self.waiter.done():
            self.waiter.set_result(res)


class Pool:
    """Idle keep-alive connections to one server; a request takes one or opens a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Conn] = []
        self.opened = 0

    async def open(self) -> Conn:
        self.opened += 1
        _, conn = await asyncio.get_running_loop().create_connection(Conn, HOST, self.port)
        return conn

    async def warm(self, n: int) -> None:
        self.idle += await asyncio.gather(*(self.open() for _ in range(n)))

    async def request(self, raw: bytes, res: Result, stream: bool = False) -> Result:
        try:
            conn = self.idle.pop() if self.idle else await self.open()
        except OSError as exc:
            res.error = f"connect: {exc}"
            return res
        try:
            await asyncio.wait_for(conn.send(raw, res, stream), 120)
        except TimeoutError:
            res.error = "timeout"
            conn.transport.close()
            return res
        if not conn.closed:
            self.idle.append(conn)
        return res

    def close(self) -> None:
        for c in self.idle:
            c.transport.close()


def http_post(path: str, body: dict) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1]


# -- the model's answer: the engine on a virtual clock ----------------------------------------------------
def model_schedule(arrival_s, isl, osl, time_scale: float):
    """The step model's timing of these requests (arrivals in real seconds from the client's zero).

    Returns ``(first_s, finish_s, step_ends, frontend_s)``: times in real seconds from the same zero (a
    decoding request's token ``k`` arrives at the end of iteration ``index(first_s) + k``), and the worker's
    frontend latency in emulated seconds.
    """
    from fleetwise.emulate.engine import EmulatedEngine, EmuRequest, run_virtual
    from fleetwise.emulate.worker import EmulatorConfig, Worker

    async def make():
        return Worker(EmulatorConfig(**MODEL, time_scale=time_scale))

    worker = asyncio.run(make())
    engine = EmulatedEngine(worker.limits)
    order = np.argsort(arrival_s, kind="stable")
    arrival = np.asarray(arrival_s)[order] * time_scale + worker.frontend_s  # emulated seconds at the engine
    reqs = [EmuRequest(int(i), int(isl[i]), int(osl[i]), worker.limits.kv_block_tokens, int(osl[i]))
            for i in order]
    step_ends = run_virtual(engine, arrival, reqs)
    n = len(reqs)
    first = np.empty(n)
    finish = np.empty(n)
    for r in reqs:
        first[r.rid], finish[r.rid] = r.first_s, r.finish_s
    return first / time_scale, finish / time_scale, np.asarray(step_ends) / time_scale, worker.frontend_s


# -- phases ------------------------------------------------------------------------------------------------
def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def dist_ms(values) -> dict:
    v = np.asarray(values) * 1e3
    return {"p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99), "max": float(v.max()) if len(v) else None,
            "mean": float(v.mean()) if len(v) else None}


async def _streams(port: int, n: int, isl: int, osl: int) -> tuple[list[Result], float]:
    pool = Pool(port)
    await pool.warm(n)
    body = {"model": MODEL["model"], "prompt": list(range(1, isl + 1)), "max_tokens": osl, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    raw = http_post("/v1/completions", body)
    results = [Result() for _ in range(n)]
    t0 = time.perf_counter()
    conns = [pool.idle.pop() for _ in range(n)]
    waits = [c.send(raw, r, True) for c, r in zip(conns, results)]
    await asyncio.wait_for(asyncio.gather(*waits), 600)
    for c in conns:
        c.transport.close()
    return results, t0


def phase_streams(args) -> dict:
    n, isl, osl, ts = args.streams, args.stream_isl, args.stream_osl, args.stream_time_scale
    with Emulator(ts) as emu:
        meter = CpuMeter(emu)
        results, t0 = run_async(_streams(emu.port(), n, isl, osl))
        cpu = meter.stop()
        wall = float(np.nanmax([r.t_done for r in results])) - t0
        stats = emu.stats()
        command = emu.command
    ok = [r for r in results if not r.error and r.status == 200 and r.done_marker]
    exact = [r for r in ok if r.tokens == osl and r.usage_tokens == osl]
    sent = np.array([r.t_write - t0 for r in results])
    first_m, finish_m, step_ends, _ = model_schedule(sent, [isl] * n, [osl] * n, ts)
    # The streams are identical and written within a few ms; the emulator reads them in its own order, not
    # the order of writing. So the k-th stream to get its first token is held to the model's k-th first token.
    exact = sorted(exact, key=lambda r: r.token_times[0][0])
    model_rank = np.argsort(first_m, kind="stable")
    ttft_obs, tpot_obs, tpot_model, delays, itl_obs = [], [], [], [], []
    for r, i in zip(exact, model_rank):
        times = np.repeat([t - t0 for t, _ in r.token_times], [k for _, k in r.token_times])
        k0 = bisect.bisect_left(step_ends, first_m[i] - 1e-12)
        model_times = step_ends[k0:k0 + osl]
        delays.append(times - model_times)
        ttft_obs.append(times[0] - (r.t_write - t0))
        if osl > 1:
            tpot_obs.append((times[-1] - times[0]) / (osl - 1))
            tpot_model.append((finish_m[i] - first_m[i]) / (osl - 1))
            itl_obs.append(np.diff(times))
    delays = np.concatenate(delays) if delays else np.array([])
    itl_model = np.diff(step_ends)
    total_tokens = sum(r.tokens for r in results)
    model_span = float(finish_m.max())
    tpot_ratio = float(np.mean(tpot_obs) / np.mean(tpot_model)) if tpot_obs else float("nan")
    delay_p99_ms = pct(delays, 99) * 1e3
    passed = (len(exact) == n and stats.get("lag_resets", 1) == 0 and abs(tpot_ratio - 1) <= 0.10
              and delay_p99_ms <= 100)
    return {
        "command": command, "streams": n, "isl": isl, "osl": osl, "time_scale": ts,
        "completed": len(ok), "exact_token_counts": len(exact), "tokens": total_tokens,
        "wall_s": wall, "model_wall_s": model_span,
        "tokens_per_s": total_tokens / wall, "model_tokens_per_s": n * osl / model_span,
        "ttft_ms": dist_ms(ttft_obs), "model_ttft_ms": dist_ms(first_m - sent),
        "tpot_ms_mean": float(np.mean(tpot_obs) * 1e3) if tpot_obs else None,
        "model_tpot_ms_mean": float(np.mean(tpot_model) * 1e3) if tpot_model else None,
        "tpot_ratio": tpot_ratio,
        "itl_ms": dist_ms(np.concatenate(itl_obs)) if itl_obs else None,
        "model_itl_ms": dist_ms(itl_model),
        "token_delay_ms": dist_ms(delays),
        "engine": stats, **cpu,
        "errors": sorted({r.error for r in results if r.error})[:5],
        "pass": bool(passed),
    }


def short_requests(rate: float, duration_s: float, seed: int):
    rng = np.random.default_rng(seed)
    n = max(1, int(rate * duration_s))
    at = np.cumsum(rng.exponential(1.0 / rate, n))
    return at - at[0], rng.integers(1, 5, n)


async def _open_loop(port: int, at, max_tokens) -> tuple[list[Result], float, list]:
    pool = Pool(port)
    await pool.warm(32)
    prompt = list(range(1, 17))
    raws = {k: http_post("/v1/completions", {"model": MODEL["model"], "prompt": prompt, "max_tokens": int(k),
                                             "ignore_eos": True}) for k in set(max_tokens.tolist())}
    results = [Result() for _ in at]
    lag = []
    tasks = []
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter() + 0.05
    for i, a in enumerate(at):
        delay = t0 + a - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(time.perf_counter() - (t0 + a))
        tasks.append(loop.create_task(pool.request(raws[int(max_tokens[i])], results[i])))
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    pool.close()
    return results, t0, lag


def run_short(emu: Emulator, rate: float, duration_s: float, seed: int, slack_ms: float) -> dict:
    at, max_tokens = short_requests(rate, duration_s, seed)
    before = emu.stats()
    meter = CpuMeter(emu)
    results, t0, lag = run_async(_open_loop(emu.port(), at, max_tokens))
    cpu = meter.stop()
    after = emu.stats()
    done = [r.t_done for r in results if np.isfinite(r.t_done)]
    wall = (max(done) - min(r.t_write for r in results)) if done else duration_s
    ok = np.array([not r.error and r.status == 200 and r.tokens == k for r, k in zip(results, max_tokens)])
    sent = np.array([r.t_write - t0 for r in results])
    latency = np.array([r.t_done - r.t_write for r in results])
    _, finish_m, _, frontend_s = model_schedule(sent, [16] * len(at), max_tokens, emu.config["time_scale"])
    model_latency = finish_m - sent
    overhead = (latency - model_latency)[ok]
    sustained = bool(ok.all() and pct(overhead, 99) * 1e3 <= slack_ms)
    return {
        "rate_rps": rate, "requests": len(at), "ok": int(ok.sum()), "achieved_rps": len(at) / wall,
        "latency_ms": dist_ms(latency[ok]), "model_latency_ms": dist_ms(model_latency),
        "overhead_ms": dist_ms(overhead), "client_send_lag_ms": dist_ms(lag),
        "lone_request_model_ms": None, "frontend_ms": frontend_s * 1e3,
        "lag_resets": after.get("lag_resets", 0) - before.get("lag_resets", 0),
        **cpu,
        "errors": sorted({r.error for r in results if r.error})[:5], "sustained": sustained,
    }


def phase_rates(args) -> dict:
    rows = []
    with Emulator(1.0) as emu:
        for rate in args.rates:
            row = run_short(emu, rate, args.rate_duration, seed=1, slack_ms=args.p99_slack_ms)
            rows.append(row)
            _progress(f"rates: {rate:g} req/s -> p99 {row['latency_ms']['p99']:.1f} ms "
                      f"(model {row['model_latency_ms']['p99']:.1f}), ok {row['ok']}/{row['requests']}, "
                      f"{'sustained' if row['sustained'] else 'NOT sustained'}")
            if not row["sustained"]:
                break
        command = emu.command
    best = max((r["rate_rps"] for r in rows if r["sustained"]), default=0.0)
    return {"command": command, "duration_s": args.rate_duration, "p99_slack_ms": args.p99_slack_ms,
            "rows": rows, "max_sustained_rps": best, "pass": best >= 500}


def phase_latency(args) -> dict:
    with Emulator(1.0) as emu:
        row = run_short(emu, args.latency_rate, args.latency_duration, seed=2, slack_ms=args.p99_slack_ms)
        command = emu.command
    from fleetwise.emulate.worker import EmulatorConfig, Worker

    async def make():
        return Worker(EmulatorConfig(**MODEL))

    w = asyncio.run(make())
    sm = w.limits.step_model
    lone = {k: 1e3 * (w.frontend_s + sm(16, 16 * 17 / 2, 0, 0, 1) + sum(sm(0, 0.0, 1, 17 + j) for j in range(k - 1)))
            for k in range(1, 5)}
    row["lone_request_model_ms"] = lone
    return {"command": command, **row}


def run_async(coro):
    """Run a load on uvloop with the client's garbage collector held off: a full collection of this process's
    heap (catalog, NumPy, earlier results) stalls it for ~60 ms and would be charged to the emulator."""
    import uvloop

    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    finally:
        gc.enable()
        gc.unfreeze()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- report ------------------------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _line(*parts: str) -> str:
    return "".join(parts)


def _cpu(fig: dict, short: bool = False) -> str:
    e, c, o = fig["emulator_cpu_pct"], fig["client_cpu_pct"], fig["other_cpu_pct"]
    return f"{e:.0f}% / {c:.0f}% / {o:.0f}%" if short else \
        f"emulator {e:.0f}%, client {c:.0f}%, rest of the machine {o:.0f}% (of one core)"


def _render_streams(s: dict) -> list[str]:
    head = _line(f"1. {s['streams']:,} concurrent streams, {s['isl']} prompt ids / {s['osl']} output tokens, ",
                 f"time scale {s['time_scale']:g}: {_verdict(s['pass'])} (all complete and exact, no lag reset, ",
                 "TPOT within 10% of the model's, token delay p99 <= 100 ms)")
    counts = _line(f"   completed {s['completed']:,}/{s['streams']:,}, exact token counts ",
                   f"{s['exact_token_counts']:,}, {s['tokens']:,} tokens in {s['wall_s']:.2f} s = ",
                   f"{s['tokens_per_s']:,.0f} tokens/s (model: {s['model_wall_s']:.2f} s, ",
                   f"{s['model_tokens_per_s']:,.0f} tokens/s)")
    if not s["itl_ms"]:
        return [head, counts, "   no stream completed exactly", f"   emulator: {s['command']}", ""]
    ttft, mttft, itl, mitl, d = s["ttft_ms"], s["model_ttft_ms"], s["itl_ms"], s["model_itl_ms"], s["token_delay_ms"]
    timing = _line(f"   TTFT p50/p99 {ttft['p50']:.0f}/{ttft['p99']:.0f} ms (model {mttft['p50']:.0f}/",
                   f"{mttft['p99']:.0f}); TPOT mean {s['tpot_ms_mean']:.2f} ms (model {s['model_tpot_ms_mean']:.2f}, ",
                   f"ratio {s['tpot_ratio']:.3f}); ITL p50/p99 {itl['p50']:.1f}/{itl['p99']:.1f} ms ",
                   f"(model {mitl['p50']:.1f}/{mitl['p99']:.1f})")
    delay = _line(f"   token delay vs the model p50/p99/max {d['p50']:.1f}/{d['p99']:.1f}/{d['max']:.1f} ms; ",
                  f"lag resets {s['engine'].get('lag_resets')}; CPU {_cpu(s)}")
    return [head, counts, timing, delay, f"   emulator: {s['command']}", ""]


def _render_rates(r: dict) -> list[str]:
    out = [_line("2. short non-streamed requests (16 ids, max_tokens 1..4), ",
                 f"{r['duration_s']:g} s of Poisson arrivals per rate; sustained = all answered exactly and ",
                 f"overhead p99 <= {r['p99_slack_ms']:g} ms: max sustained {r['max_sustained_rps']:,.0f} req/s: ",
                 f"{_verdict(r['pass'])} (goal 500)"),
           _line("   | offered req/s | completed req/s | OK | latency p50 | p99 | model p50 | p99 | ",
                 "overhead p50 | p99 | CPU: emulator / client / rest | lag resets | sustained |"),
           "   |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in r["rows"]:
        lat, mod, ov = row["latency_ms"], row["model_latency_ms"], row["overhead_ms"]
        out.append(_line(f"   | {row['rate_rps']:,.0f} | {row['achieved_rps']:,.0f} | {row['ok']:,}/",
                         f"{row['requests']:,} | {lat['p50']:.1f} ms | {lat['p99']:.1f} ms | {mod['p50']:.1f} ms | ",
                         f"{mod['p99']:.1f} ms | {ov['p50']:.2f} ms | {ov['p99']:.2f} ms | ",
                         f"{_cpu(row, short=True)} | {row['lag_resets']} | ",
                         f"{'yes' if row['sustained'] else 'no'} |"))
    return [*out, f"   emulator: {r['command']}", ""]


def _render_latency(la: dict) -> list[str]:
    ov, lat, mod = la["overhead_ms"], la["latency_ms"], la["model_latency_ms"]
    lone = ", ".join(f"{k} token{'s' if k > 1 else ''} {v:.1f}" for k, v in la["lone_request_model_ms"].items())
    return [_line(f"3. added latency at {la['rate_rps']:g} req/s ({la['requests']:,} short requests): ",
                  f"overhead p50 {ov['p50']:.2f} ms, p99 {ov['p99']:.2f} ms (max {ov['max']:.1f} ms)"),
            _line(f"   client latency p50/p99 {lat['p50']:.2f}/{lat['p99']:.2f} ms; the model's for the same ",
                  f"requests {mod['p50']:.2f}/{mod['p99']:.2f} ms (a lone request: {lone} ms, the ",
                  f"{la['frontend_ms']:.2f} ms frontend included); OK {la['ok']:,}/{la['requests']:,}; ",
                  f"CPU {_cpu(la)}"),
            f"   emulator: {la['command']}", ""]


def render(fig: dict) -> str:
    out = [_line(f"Emulator speed: one emulator process ({MODEL['model']}, {MODEL['precision']}, {MODEL['gpus']}x ",
                 f"{MODEL['gpu']}, {MODEL['engine']} profile), one load-generator process (asyncio on uvloop, ",
                 f"raw HTTP/1.1), {fig['cores']} cores, Python {fig['python']}"), ""]
    for key, fn in (("streams", _render_streams), ("rates", _render_rates), ("latency", _render_latency)):
        if key in fig:
            out += fn(fig[key])
    if fig.get("interrupted"):
        out.append("interrupted: the phases above are the ones that finished")
    out.append(f"command: {fig['command']}")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="streams,rates,latency", help="Phases to run, comma-separated.")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--stream-isl", type=int, default=128)
    p.add_argument("--stream-osl", type=int, default=300)
    p.add_argument("--stream-time-scale", type=float, default=1.0)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")],
                   default=[250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0],
                   help="Rates of the short-request sweep, req/s, comma-separated (stops at the first not sustained).")
    p.add_argument("--rate-duration", type=float, default=5.0, help="Seconds of arrivals per rate.")
    p.add_argument("--p99-slack-ms", type=float, default=50.0)
    p.add_argument("--latency-rate", type=float, default=100.0)
    p.add_argument("--latency-duration", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = p.parse_args()
    phases = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(phases) - {"streams", "rates", "latency"}
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.streams + 256)), hard))
    fig = {"command": "python benchmarks/emulate_speed.py " + shlex.join(sys.argv[1:]), "cores": os.cpu_count(),
           "python": sys.version.split()[0]}
    # Ctrl-C (or SIGTERM): each phase's Emulator context stops its process on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, fn in (("streams", phase_streams), ("rates", phase_rates), ("latency", phase_latency)):
            if name in phases:
                _progress(f"{name} ...")
                fig[name] = fn(args)
    except KeyboardInterrupt:
        fig["interrupted"] = True
    print(json.dumps(fig, indent=2) if args.json else render(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
