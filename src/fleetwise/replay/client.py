"""Open-loop replay of a request trace against OpenAI-compatible endpoints, measuring TTFT, ITL, TPOT, E2E.

One scheduler task sleeps until each request's arrival (``arrival / time_compress`` after the start, in
absolute terms so errors do not accumulate) and spawns a task for it without waiting for earlier requests.
At most ``max_in_flight`` requests are open at once; a request that finds no free slot waits, and the wait
shows as client lag (``sent_s - scheduled``), never as server latency.

HTTP goes over keep-alive HTTP/1.1 connections, one request at a time per connection, through a transport
of :mod:`fleetwise.replay.transport`: ``aiohttp`` (the default; its C parser and pool cost little enough
CPU per request to replay thousands of requests per second from one process) or ``httpx``. Transport
failures become the reasons of :func:`fleetwise.replay.transport.failure_reason`.

Prompts are token-id arrays of the trace's input length (``"prompt": [ids]``, exact on any server that
accepts token ids, as vLLM and SGLang do): the first two ids encode the request's index, so no two requests
share a prefix, unless the trace carries prefix-block ids (Mooncake ``hash_ids``, 512-token blocks) and
``share_prefixes`` is on, in which case equal block ids get equal tokens. The output length is forced with
``max_tokens`` = ``min_tokens`` = the trace's output length and ``ignore_eos`` (vLLM/SGLang extensions;
other servers ignore them, and ``short_outputs`` in the summary counts answers that came back shorter).
With ``api="chat"`` the prompt is one user message of about one common English word per input token -
approximate: a real tokenizer and the chat template add a few tokens (the instant endpoint counts words).

What a trace does not record about a request's body - whether it is deterministic, whether it repeats an
earlier one - is stated by a :class:`RequestMix` (default: every request deterministic, none repeated). A
repeat copies an earlier deterministic request whole (prompt, lengths, sampling); the gateway benchmark uses
it to measure response caching and in-flight de-duplication on a real trace's arrivals.

Measurements (wall clock, from just before the request is handed to the HTTP client; the result reports
them multiplied by ``time_compress``): TTFT is the arrival of the first SSE event carrying a non-empty token
(``text``, ``content`` or ``reasoning_content``), ITL the gaps between such events, E2E the last byte, and
TPOT = (E2E - TTFT) / (output tokens - 1) with the output tokens taken from the final ``usage`` when the
server sends one, else the number of content events. Servers that pack several tokens into one event
(SGLang, vLLM's ``--stream-interval``) show it in ITL, not in TPOT. Without streaming only the whole answer
is seen: TTFT = E2E and TPOT is unknown.

Several URLs share the load by least outstanding tokens (input + output tokens of the requests sent to an
endpoint and not finished; ties go to the first listed), the fleet simulator's default ``least-work`` rule.
With ``backends`` (an async callable returning the base URLs that take new work now, e.g. a controller's
``/api/backends``) the set is refreshed every half second: new workers join, draining ones get no new
requests, and a request that finds no backend waits for one (the wait counts in its TTFT - the fleet had no
capacity - not as client lag). In this mode the replay is the fleet's router, and does what a router does
with a backend that went away before its list caught up (a worker stopped while the controller that lists
the fleet restarts): a request whose connection is refused, or that a worker turns away with 503 before
answering (cold start, reclaimed), goes to another backend, and the one that refused takes no new request
for ``EJECT_S`` (Envoy's outlier ejection, in short). Without that, least-outstanding routing sends every
new request to the dead backend - it has nothing outstanding - and fails them all. Re-sent requests are
counted (``rerouted``); their TTFT includes the refused try.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import re
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.replay.results import CANCELLED, NOT_SENT, OK, ReplayResult
from fleetwise.replay.transport import TRANSPORTS, failure_reason, open_transport, unreached
from fleetwise.traffic.records import RequestTrace

APIS = ("completions", "chat")
HTTP_CLIENTS = TRANSPORTS
DEFAULT_HTTP_CLIENT = "aiohttp"
DEFAULT_MAX_IN_FLIGHT = 1024
DEFAULT_TIMEOUT_S = 600.0
PREFIX_BLOCK_TOKENS = 512
"""Tokens per prefix-block id (Mooncake's ``hash_ids`` are 512-token blocks)."""
MAX_ITL_SAMPLES = 4_000_000
"""ITL gaps kept (32 MB); past it every other one is dropped and half as many are kept from then on."""
MODELS_TIMEOUT_S = 10.0
PROGRESS_EVERY_S = 0.25
STOP_POLL_S = 0.05
BACKENDS_POLL_S = 0.5
EJECT_S = 1.0  # wall seconds a backend that refused a request takes no new one (following backends only)

_CONTENT = re.compile(rb'"(?:text|content|reasoning_content|reasoning)"\s*:\s*"(?!")')
_ID_LO, _ID_SPAN = 1000, 28_000  # token ids in [1000, 29000): past byte/special tokens, inside any vocab
_WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "on", "with", "as", "was", "at", "by",
          "be", "this", "are", "or", "from", "an", "have", "not", "they", "which", "one", "you", "had",
          "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who",
          "will", "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than",
          "them", "can", "only", "other", "new", "some", "could", "time", "these", "two", "may", "then",
          "do", "first", "any", "my", "now", "such", "like", "our", "over", "man", "me", "even", "most",
          "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where",
          "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people",
          "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men",
          "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day",
          "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come",
          "since", "against", "go", "came", "right", "used", "take", "three")


@dataclass(frozen=True)
class RequestMix:
    """The stated shares a trace does not record (assumptions of the run, reported with its results).

    Attributes:
        deterministic_share: requests sent with ``temperature: 0`` (cacheable); the rest get ``temperature``.
        temperature: the sampling temperature of the other requests.
        duplicate_share: requests that repeat one of the last ``duplicate_window`` deterministic originals,
            drawn uniformly (retries, refreshes, several users asking the same); the repeat keeps its own
            arrival time and copies the original's body and lengths.
        seed: seed of the draws.
    """

    deterministic_share: float = 1.0
    temperature: float = 0.7
    duplicate_share: float = 0.0
    duplicate_window: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("deterministic_share", "duplicate_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value:g}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2 (OpenAI's range), got {self.temperature:g}")
        if self.duplicate_window < 1:
            raise ConfigError(f"duplicate_window must be at least 1, got {self.duplicate_window}")

    def draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, deterministic) per request: ``source[i]`` is the request whose body request i sends
        (``i`` itself unless it is a repeat), ``deterministic[i]`` whether it is sent with temperature 0."""
        rng = np.random.default_rng(self.seed)
        deterministic = rng.random(n) < self.deterministic_share
        repeat = rng.random(n) < self.duplicate_share
        pick = rng.random(n)
        original = deterministic & ~repeat
        originals = np.flatnonzero(original)
        before = np.cumsum(original) - original  # deterministic originals strictly before i
        repeat &= before > 0
        lo = np.maximum(before - self.duplicate_window, 0)
        k = lo + np.floor(pick * (before - lo)).astype(np.int64)
        source = np.arange(n, dtype=np.int64)
        source[repeat] = originals[k[repeat]]
        return source, deterministic | repeat

    def bodies(self, n: int) -> tuple[list[int], list[str]]:
        """Per request: the index whose body it sends, and its ``temperature`` as JSON text."""
        source, deterministic = self.draw(n)
        return source.tolist(), np.where(deterministic, "0", repr(float(self.temperature))).tolist()

    def as_dict(self) -> dict:
        return {"deterministic_share": self.deterministic_share, "temperature": self.temperature,
                "duplicate_share": self.duplicate_share, "duplicate_window": self.duplicate_window,
                "seed": self.seed}


@dataclass(frozen=True)
class ReplayProgress:
    """A snapshot of a running replay (counts so far; ``elapsed_s`` is wall clock)."""

    total: int
    sent: int
    completed: int
    failed: int
    in_flight: int
    elapsed_s: float

    @property
    def send_rps(self) -> float:
        """Requests sent per wall-clock second so far."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def replay_trace(trace: RequestTrace, urls: list[str], *, model: str | None = None,
                 time_compress: float = 1.0, stream: bool = True, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 timeout_s: float = DEFAULT_TIMEOUT_S, api: str = "completions",
                 progress: Callable[[ReplayProgress], None] | None = None, stop_event=None,
                 share_prefixes: bool = True, headers: dict[str, str] | None = None,
                 http_client: str = DEFAULT_HTTP_CLIENT,
                 backends: Callable[[], Awaitable[list[str] | None]] | None = None,
                 mix: RequestMix | None = None) -> ReplayResult:
    """Replay ``trace`` open-loop against ``urls`` and measure every request (blocking; uvloop if installed).

    See :func:`areplay_trace` for the arguments.
    """
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        run = asyncio.run
    with _frozen_heap():
        return run(areplay_trace(trace, urls, model=model, time_compress=time_compress, stream=stream,
                                 max_in_flight=max_in_flight, timeout_s=timeout_s, api=api, progress=progress,
                                 stop_event=stop_event, share_prefixes=share_prefixes, headers=headers,
                                 http_client=http_client, backends=backends, mix=mix))


@contextmanager
def _frozen_heap():
    """Keep the objects alive before the run out of the collector's reach while it runs, unless the process
    froze its heap itself.

    A full collection walks every object of the process (numpy, aiohttp, the caller's data), a stall of tens
    of ms that shows as client lag: at 3,000 req/s it took the lag p99 from 1.5-1.9 ms to 18-112 ms.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def areplay_trace(trace: RequestTrace, urls: list[str], *, model: str | None = None,
                        time_compress: float = 1.0, stream: bool = True,
                        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, timeout_s: float = DEFAULT_TIMEOUT_S,
                        api: str = "completions", progress: Callable[[ReplayProgress], None] | None = None,
                        stop_event=None, share_prefixes: bool = True, headers: dict[str, str] | None = None,
                        http_client: str = DEFAULT_HTTP_CLIENT,
                        backends: Callable[[], Awaitable[list[str] | None]] | None = None,
                        mix: RequestMix | None = None) -> ReplayResult:
    """Replay ``trace`` open-loop against ``urls`` (OpenAI-compatible base URLs) and measure every request.

    Args:
        model: the model name to send; None: the first id that GET {urls[0]}/v1/models lists.
        time_compress: send this many times faster than the trace; latencies are reported times this factor.
        max_in_flight: at most this many requests open at once (and connections in the pool).
        timeout_s: a request still unanswered after this long (wall clock) fails as ``timeout``.
        api: ``completions`` (token-id prompts, exact lengths) or ``chat`` (text, approximate lengths).
        progress: called with a :class:`ReplayProgress` about four times a second, on the event loop.
        stop_event: anything with ``is_set()`` (``threading.Event``, ``asyncio.Event``): once set, sending
            stops, requests in flight are cancelled, and what was measured is returned (``interrupted``).
        share_prefixes: give equal prompt blocks to equal prefix-block ids of the trace, if it has them.
        headers: extra HTTP headers for every request (e.g. ``{"authorization": "Bearer KEY"}``).
        http_client: ``aiohttp`` or ``httpx`` (see :mod:`fleetwise.replay.transport`).
        backends: polled every half second for the base URLs that take new work (None: keep the last set);
            ``urls`` is the set at the start.
        mix: the deterministic and repeated shares of the requests (default: all deterministic, no repeats).
    """
    endpoints = _check(trace, urls, time_compress, max_in_flight, timeout_s, api, http_client)
    _raise_fd_limit(max_in_flight + 64)
    headers = dict(headers or {})
    if model is None:
        model = await discover_model(endpoints[0], headers)
    http = open_transport(http_client, max_in_flight, timeout_s, headers)
    try:
        run = _Run(http, trace, endpoints, model, time_compress, stream, max_in_flight, timeout_s, api,
                   share_prefixes, mix or RequestMix())
        run.backends = backends
        await run.run(progress, stop_event)
    finally:
        await http.aclose()
    return run.result()


def request_bodies(trace: RequestTrace, *, model: str, api: str = "completions", stream: bool = True,
                   share_prefixes: bool = True, mix: RequestMix | None = None) -> Iterator[bytes]:
    """The JSON body of every request of ``trace``, in trace order, exactly as a replay sends it (e.g. a
    sample for ``fleetwise gateway calibrate``)."""
    if api not in APIS:
        raise ConfigError(f"api must be one of {', '.join(APIS)} (got '{api}')")
    mix = mix or RequestMix()
    source, temperature = mix.bodies(len(trace))
    prompts = _Prompts(trace, api, model, stream, share_prefixes)
    for i, temp in zip(source, temperature, strict=True):
        yield prompts.body(i, int(trace.input_tokens[i]), int(trace.output_tokens[i]), temp)


async def discover_model(base: str, headers: dict[str, str] | None = None) -> str:
    """The first model id that GET {base}/v1/models lists; a ConfigError naming the URL if there is none."""
    import httpx

    where = f"{base}/v1/models"
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=MODELS_TIMEOUT_S) as client:
            resp = await client.get(where, headers=headers)
    except httpx.HTTPError as exc:
        why = ("cannot connect" if isinstance(exc, httpx.ConnectError)
               else f"no answer in {MODELS_TIMEOUT_S:g} s" if isinstance(exc, httpx.TimeoutException)
               else _describe(exc))
        raise ConfigError(f"cannot reach {where} ({why}); is the server up? (or pass --model)") from None
    if resp.status_code != 200:
        raise ConfigError(f"GET {where} answered HTTP {resp.status_code}; pass --model") from None
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"GET {where} listed no model; pass --model") from None


def find_model(url: str, headers: dict[str, str] | None = None) -> str:
    """The blocking form of :func:`discover_model`, for a base URL as users write it."""
    return asyncio.run(discover_model(normalize_url(url), headers))


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash or ``/v1``; a ConfigError unless it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"a server URL must be http:// or https:// with a host (got '{url}')")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(f"the server URL has a bad port (got '{url}')") from None
    if parts.query or parts.fragment:
        raise ConfigError(f"a server URL must not have a query or fragment (got '{url}')")
    base = url.strip().rstrip("/")
    return base.removesuffix("/v1")


def _check(trace, urls, time_compress, max_in_flight, timeout_s, api, http_client) -> list[str]:
    if not urls:
        raise ConfigError("give at least one server URL")
    if not (isinstance(time_compress, int | float) and 0 < time_compress < math.inf):
        raise ConfigError("the time-compression factor must be a finite positive number "
                          f"(got {time_compress})")
    if max_in_flight < 1:
        raise ConfigError(f"the in-flight limit must be at least 1 (got {max_in_flight})")
    if not 0 < timeout_s < math.inf:
        raise ConfigError(f"the request timeout must be a finite positive number of seconds (got {timeout_s})")
    if api not in APIS:
        raise ConfigError(f"the API must be one of {', '.join(APIS)} (got '{api}')")
    if http_client not in HTTP_CLIENTS:
        raise ConfigError(f"the HTTP client must be one of {', '.join(HTTP_CLIENTS)} (got '{http_client}')")
    if len(trace) == 0:
        raise ConfigError("the trace has no requests to replay")
    return [normalize_url(u) for u in urls]


def _raise_fd_limit(needed: int) -> None:
    """Each request in flight holds a socket: lift the soft open-file limit towards the hard one if short."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # the run goes on; connections beyond the limit fail as connection_lost


def _describe(exc: BaseException | str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:200]


# -- prompts ---------------------------------------------------------------------------------------------


class _Prompts:
    """Request bodies: prompt ids (or words) cut from one long pseudo-random sequence, made unique per request
    by a head that encodes its index, or shared per prefix block."""

    def __init__(self, trace: RequestTrace, api: str, model: str, stream: bool, share_prefixes: bool) -> None:
        self.api = api
        self.trace = trace
        self.prefixed = share_prefixes and trace.prefix_offsets is not None and api == "completions"
        longest = int(trace.input_tokens.max()) if len(trace) else 0
        self.span = max(longest, 4 * PREFIX_BLOCK_TOKENS if self.prefixed else 0) + 1
        rng = np.random.default_rng(0)
        if api == "completions":
            items = (_ID_LO + rng.integers(0, _ID_SPAN, self.span)).astype(str).tolist()
            sep = ","
        else:
            items = [_WORDS[k] for k in rng.integers(0, len(_WORDS), self.span)]
            sep = " "
        self.text = sep.join(items) + sep
        self.ends = np.concatenate([[0], np.cumsum([len(s) + 1 for s in items])]).tolist()
        tail = ',"stream":true,"stream_options":{"include_usage":true}}' if stream else ',"stream":false}'
        self.template = ('{"model":' + json.dumps(model) + (',"prompt":[%s]' if api == "completions" else
                         ',"messages":[{"role":"user","content":"%s"}]') +
                         ',"max_tokens":%d,"min_tokens":%d,"ignore_eos":true,"temperature":%s' + tail)

    def body(self, i: int, isl: int, osl: int, temperature: str = "0") -> bytes:
        osl = max(osl, 1)  # max_tokens=0 is an error on most servers
        prompt = self._prefixed(i, max(isl, 1)) if self.prefixed else self._unique(i, max(isl, 1))
        return (self.template % (prompt, osl, osl, temperature)).encode()

    def _unique(self, i: int, n: int) -> str:
        if self.api == "chat":
            return f"r{i}" + (" " + self.text[:self.ends[n - 1] - 1] if n > 1 else "")
        head = f"{_ID_LO + i % _ID_SPAN}" + (f",{_ID_LO + i // _ID_SPAN % _ID_SPAN}" if n > 1 else "")
        return head + ("," + self.text[:self.ends[n - 2] - 1] if n > 2 else "")

    def _prefixed(self, i: int, n: int) -> str:
        parts, left = [], n
        room = self.span - PREFIX_BLOCK_TOKENS
        for h in self.trace.prefix(i).tolist():
            if left <= 0:
                break
            k = min(left, PREFIX_BLOCK_TOKENS)
            start = (h * 7919) % room
            parts.append(self.text[self.ends[start]:self.ends[start + k]])
            left -= k
        if left > 0:
            parts.append(self._unique(i, left) + ",")
        return "".join(parts)[:-1]


# -- the replay ------------------------------------------------------------------------------------------


class _Run:
    """The state of one replay: the per-request arrays its tasks fill in, and the routing counters."""

    def __init__(self, http, trace: RequestTrace, endpoints: list[str], model: str,
                 time_compress: float, stream: bool, max_in_flight: int, timeout_s: float, api: str,
                 share_prefixes: bool, mix: RequestMix | None = None) -> None:
        n = len(trace)
        self.http, self.trace, self.endpoints, self.model = http, trace, endpoints, model
        self.compress, self.stream, self.timeout_s, self.api = float(time_compress), stream, timeout_s, api
        path = "/v1/completions" if api == "completions" else "/v1/chat/completions"
        self.urls = [base + path for base in endpoints]
        self.prompts = _Prompts(trace, api, model, stream, share_prefixes)
        self.arrival = ((trace.arrival_s - trace.start_s) / self.compress).tolist()  # wall offsets from start
        mix = mix or RequestMix()
        self.source, self.temperature = mix.bodies(n)  # the request whose body each sends (itself unless a repeat)
        self.isl = trace.input_tokens[self.source].tolist()
        self.osl = trace.output_tokens[self.source].tolist()
        self.sent = np.full(n, np.nan)
        self.ttft = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        self.n_out = np.zeros(n, dtype=np.int64)
        self.url_index = np.full(n, -1, dtype=np.int16)
        self.status = [NOT_SENT] * n
        self.outstanding = [0] * len(endpoints)
        self.active = list(range(len(endpoints)))  # endpoints that take new requests
        self.backends = None
        self.ejected: dict[int, float] = {}  # endpoint -> perf_counter() until which it takes no new request
        self.rerouted = 0
        self.itl = array("d")
        self.itl_skip = 0  # keep one ITL gap in 2**itl_skip once the cap is reached
        self.itl_seen = 0
        self.sem = asyncio.Semaphore(max_in_flight)
        self.tasks: set[asyncio.Task] = set()
        self.sent_count = self.completed = self.failed = self.waits = 0
        self.first_errors: dict[str, str] = {}
        self.t0 = self.last_end = 0.0
        self.interrupted = False

    # -- running
    async def run(self, progress, stop_event) -> None:
        loop = asyncio.get_running_loop()
        self.t0 = self.last_end = time.perf_counter()
        scheduler = loop.create_task(self._schedule())
        helpers = []
        if stop_event is not None:
            helpers.append(loop.create_task(self._watch(stop_event, scheduler)))
        if progress is not None:
            helpers.append(loop.create_task(self._report(progress)))
        if self.backends is not None:
            helpers.append(loop.create_task(self._follow_backends()))
        try:
            await asyncio.wait([scheduler])
            while self.tasks:
                await asyncio.wait(list(self.tasks))
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if progress is not None:
                progress(self.snapshot())

    async def _schedule(self) -> None:
        """Spawn each request at its arrival time, measured from the start so sleeping late never drifts."""
        loop = asyncio.get_running_loop()
        arrival, n, i = self.arrival, len(self.arrival), 0
        clock, t0, spawn, tasks = time.perf_counter, self.t0, self._one, self.tasks
        while i < n:
            now = clock() - t0
            if arrival[i] > now:  # never early: timers may wake a little before their time, so look again
                await asyncio.sleep(arrival[i] - now)
                continue
            while i < n and arrival[i] <= now:
                task = loop.create_task(spawn(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.sleep(0)  # let the spawned requests go out before looking at the clock again

    async def _watch(self, stop_event, scheduler: asyncio.Task) -> None:
        while not stop_event.is_set():
            await asyncio.sleep(STOP_POLL_S)
        self.interrupted = True
        scheduler.cancel()
        for task in list(self.tasks):
            task.cancel()

    async def _follow_backends(self) -> None:
        """Refresh the routable endpoints from ``backends`` (errors keep the last set)."""
        while True:
            await asyncio.sleep(BACKENDS_POLL_S)
            try:
                urls = await self.backends()
            except Exception:  # noqa: BLE001, S112 - the source may be down for a while (a restarting controller)
                continue
            if urls is not None:
                self.set_backends(urls)

    def set_backends(self, urls: list[str]) -> None:
        """Route new requests to ``urls`` only (each a base URL; new ones are added)."""
        path = self.urls[0][len(self.endpoints[0]):] if self.endpoints else "/v1/completions"
        active = []
        for url in urls:
            base = normalize_url(url)
            if base not in self.endpoints:
                self.endpoints.append(base)
                self.urls.append(base + path)
                self.outstanding.append(0)
            active.append(self.endpoints.index(base))
        self.active = active

    async def _report(self, progress) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            progress(self.snapshot())

    def snapshot(self) -> ReplayProgress:
        done = self.completed + self.failed
        return ReplayProgress(len(self.arrival), self.sent_count, self.completed, self.failed,
                              self.sent_count - done, time.perf_counter() - self.t0)

    # -- one request
    def _route(self) -> int:
        """The active endpoint with the least outstanding tokens (-1: none is active)."""
        out, active = self.outstanding, self.active
        if self.ejected:
            now = time.perf_counter()
            for u, until in list(self.ejected.items()):
                if until <= now:
                    del self.ejected[u]
            active = [u for u in active if u not in self.ejected]
        if len(active) == 1:
            return active[0]
        return min(active, key=out.__getitem__, default=-1)

    async def _routed(self, i: int, work: int, start: float) -> str:
        """Send request ``i`` to the best backend; following backends, one that refuses it is ejected and the
        request goes to the next (see the module docstring)."""
        while True:
            while (u := self._route()) < 0:  # no backend takes work now: wait for one
                await asyncio.sleep(STOP_POLL_S)
            self.outstanding[u] += work
            self.url_index[i] = u
            try:
                status = await self._request(i, u, start)
            except Exception as exc:
                if self.backends is None or not unreached(exc):
                    raise
                status = "refused"
            finally:
                self.outstanding[u] -= work
            if self.backends is None or status not in ("refused", "http_503"):
                return status
            self.ejected[u] = time.perf_counter() + EJECT_S
            self.rerouted += 1

    async def _one(self, i: int) -> None:
        if self.sem.locked():
            self.waits += 1
        async with self.sem:
            start = time.perf_counter()
            self.sent[i] = start - self.t0
            self.sent_count += 1
            status = CANCELLED
            try:
                async with asyncio.timeout(self.timeout_s):
                    status = await self._routed(i, self.isl[i] + self.osl[i], start)
            except asyncio.CancelledError:
                if self.interrupted:
                    return  # status stays "cancelled": the run was stopped, nothing failed
                raise
            except Exception as exc:  # noqa: BLE001 - one request's failure never stops the run
                status = failure_reason(exc)
                self.first_errors.setdefault(status, _describe(exc))
            finally:
                self.status[i] = status
                self.last_end = time.perf_counter()
                if status == OK:
                    self.completed += 1
                elif status != CANCELLED:
                    self.failed += 1

    async def _request(self, i: int, u: int, start: float) -> str:
        body = self.prompts.body(self.source[i], self.isl[i], self.osl[i], self.temperature[i])
        answer = await self.http.post(self.urls[u], body, self.stream)
        try:
            if answer.status != 200:
                text = b"".join([c async for _, c in answer.chunks()])
                reason = f"http_{answer.status}"
                self.first_errors.setdefault(reason, _describe(text.decode("utf-8", "replace")) or reason)
                return reason
            if self.stream:
                return await self._read_stream(i, answer, start)
            return await self._read_whole(i, answer, start)
        finally:
            await answer.aclose()

    async def _read_whole(self, i: int, answer, start: float) -> str:
        parts, end = [], start
        async for end, chunk in answer.chunks():  # the last chunk's time is the answer's end
            parts.append(chunk)
        self.ttft[i] = self.e2e[i] = end - start
        try:
            self.n_out[i] = int(json.loads(b"".join(parts))["usage"]["completion_tokens"])
        except (ValueError, KeyError, TypeError):
            pass  # no usage: the output length stays unknown (0)
        return OK

    async def _read_stream(self, i: int, answer, start: float) -> str:
        """Time the SSE events: split the raw bytes on blank lines; JSON-decode only a usage event."""
        content = _CONTENT.search
        pending = b""
        last = end = start
        events = usage = 0
        done = error = False
        async for end, chunk in answer.chunks():
            if pending:
                chunk = pending + chunk
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n")
            parts = chunk.split(b"\n\n")
            pending = parts.pop()
            for event in parts:
                data = event[5:] if event.startswith(b"data:") else _data_lines(event)
                if content(data):
                    if events:
                        self._gap(end - last)
                    else:
                        self.ttft[i] = end - start  # now: kept if the stream breaks later
                    last = end
                    events += 1
                    self.n_out[i] = events
                elif data.strip() == b"[DONE]":
                    done = True
                    continue
                elif b'"error"' in data:
                    error = True
                    self.first_errors.setdefault("stream_error", _describe(data.decode("utf-8", "replace")))
                if b'"completion_tokens"' in data:
                    usage = _usage(data) or usage
        self.n_out[i] = usage or events
        self.e2e[i] = end - start
        if error:
            return "stream_error"
        if not done:
            message = f"the stream ended after {events} events, without [DONE]"
            self.first_errors.setdefault("incomplete", message)
            return "incomplete"
        return OK

    def _gap(self, gap_s: float) -> None:
        self.itl_seen += 1
        if self.itl_skip and self.itl_seen & ((1 << self.itl_skip) - 1):
            return
        self.itl.append(gap_s)
        if len(self.itl) >= MAX_ITL_SAMPLES:
            del self.itl[1::2]
            self.itl_skip += 1

    # -- the result
    def result(self) -> ReplayResult:
        x = self.compress
        ok = np.array([s == OK for s in self.status], dtype=bool)
        ttft, e2e, n_out = self.ttft * x, self.e2e * x, self.n_out
        with np.errstate(invalid="ignore", divide="ignore"):
            per_token = (e2e - ttft) / np.maximum(n_out - 1, 1)
            tpot = np.where(ok & (n_out > 1) & np.isfinite(ttft), per_token, np.nan)
        if not self.stream:
            tpot[:] = np.nan  # only the whole answer was seen
        sent = np.isfinite(self.sent)
        first_sent = float(np.nanmin(self.sent)) if sent.any() else 0.0
        return ReplayResult(
            urls=tuple(self.endpoints), model=self.model, api=self.api, stream=self.stream,
            time_compress=x, arrival_s=np.asarray(self.arrival) * x, sent_s=self.sent * x,
            input_tokens=np.asarray(self.isl, dtype=np.int64),
            max_tokens=np.asarray(self.osl, dtype=np.int64), output_tokens=n_out,
            ttft_s=ttft, tpot_s=tpot, e2e_s=np.where(ok, e2e, np.nan), status=tuple(self.status),
            url_index=self.url_index, itl_s=np.frombuffer(self.itl, dtype=np.float64) * x,
            wall_s=max(self.last_end - self.t0 - first_sent, 0.0), interrupted=self.interrupted,
            in_flight_waits=self.waits, first_errors=dict(self.first_errors), rerouted=self.rerouted)


def _data_lines(event: bytes) -> bytes:
    """The data of an SSE event whose first line is not ``data:`` (``event:``/``id:`` lines, comments)."""
    return b"\n".join(line[5:] for line in event.split(b"\n") if line.startswith(b"data:"))


def _usage(data: bytes) -> int:
    try:
        obj = json.loads(data)
        return int((obj.get("usage") or {}).get("completion_tokens") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0
