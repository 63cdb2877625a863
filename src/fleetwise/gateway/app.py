"""The gateway's HTTP face: an OpenAI-compatible proxy that trims cost per request.

One request on ``POST /v1/chat/completions`` or ``/v1/completions`` (bare ASGI: these two paths carry the
load; everything else goes through FastAPI)::

    key -> tenant (401)          body: size limit (413), JSON object (400), fields (400)
    model: a backend model, or a route -> the router's choice (404 for neither)
    rate limit (429)             admission: a saturated model sheds batch/background first (429 + Retry-After)
    reserve worst-case cost      (429 insufficient_quota with the remaining budget)
    deterministic?  cache hit -> answer (streamed if asked);  same request in flight -> join it
    else / miss    least-outstanding backend -> stream through; a backend lost mid-stream -> resume elsewhere
    settle actual cost, meter (usage log, Prometheus)

Every failure is an OpenAI error object with the right status; nothing here raises a 500 for bad input, and
a backend that hangs hits ``upstream_timeout_s``. Deterministic requests always go upstream as a stream with
usage, so one upstream call can serve streamed and non-streamed waiters alike, and the cache stores the
stream's events.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from fleetwise.gateway.backends import Backend, Backends
from fleetwise.gateway.cache import Flights, MemoryCache, cache_key, deterministic
from fleetwise.gateway.config import GatewayFile, hash_key
from fleetwise.gateway.pricing import FREE, Price, prices_from
from fleetwise.gateway.types import PRIORITIES, Denied, Tenant, UsageRecord
from fleetwise.traffic.tokens import prompt_token_ids

ANONYMOUS = Tenant("anonymous", cache_scope="anonymous")
SHED_FROM = PRIORITIES.index("batch")  # batch and background are shed first when a model is saturated
RETRY_AFTER_S = 1


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                     "code": self.code}}).encode()


@dataclass
class Gateway:
    """Everything a request needs: config, tenants, backends, prices, shared state, metrics."""

    cfg: GatewayFile
    ledger: object  # BudgetLedger
    cache: object  # ResponseCache
    usage: object | None = None  # UsageLog
    router: dict = field(default_factory=dict)  # route name -> Router
    tenants: dict[str, Tenant] = field(default_factory=dict)  # key hash -> tenant
    prices: dict[str, Price] = field(default_factory=dict)
    backends: Backends | None = None
    flights: Flights = field(default_factory=Flights)
    metrics: object = None
    session: object = None  # aiohttp.ClientSession
    _buckets: dict[str, list[float]] = field(default_factory=dict)  # tenant -> [tokens, last refill]
    _usage_rows: list[UsageRecord] = field(default_factory=list)

    @classmethod
    def build(cls, cfg: GatewayFile, ledger=None, cache=None, usage=None) -> Gateway:
        from fleetwise.gateway.metrics import GatewayMetrics

        gw = cls(cfg, ledger if ledger is not None else _memory_ledger(),
                 cache if cache is not None else MemoryCache(cfg.cache.max_entries), usage)
        gw.tenants = {h: t for t in (e.tenant() for e in cfg.tenants) for h in t.key_hashes}
        gw.prices = prices_from(cfg)
        gw.backends = Backends(cfg.backends, cfg.saturation.limits())
        gw.router = _routers(cfg)
        gw.metrics = GatewayMetrics()
        return gw

    # -- per request ----------------------------------------------------------------------------------------
    def tenant_for(self, authorization: str | None) -> Tenant:
        if not self.tenants:
            return ANONYMOUS
        if not authorization or not authorization.lower().startswith("bearer "):
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", "invalid_request_error",
                           "invalid_api_key")
        tenant = self.tenants.get(hash_key(authorization[7:].strip()))
        if tenant is None:
            raise APIError(401, "incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return tenant

    def price(self, model: str) -> Price:
        return self.prices.get(model, FREE)

    def resolve(self, requested: str, body: dict) -> tuple[str, str]:
        """(serving model, route taken: '' for a model asked by name)."""
        if requested in self.router:
            model, _score = self.router[requested].choose(body)
            return model, requested
        if self.backends.pool(requested).backends:
            return requested, ""
        known = ", ".join(sorted([*self.backends.models(), *self.router])[:8])
        raise APIError(404, f"the model '{requested[:80]}' does not exist (models here: {known})",
                       "invalid_request_error", "model_not_found", "model")

    def rate_limit(self, tenant: Tenant) -> None:
        """A token bucket of ``rate_limit_rps`` per second with one second of burst."""
        if tenant.rate_limit_rps is None:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(tenant.name, [tenant.rate_limit_rps, now])
        tokens = min(tenant.rate_limit_rps, tokens + (now - last) * tenant.rate_limit_rps)
        if tokens < 1.0:
            wait = math.ceil((1.0 - tokens) / tenant.rate_limit_rps)
            raise APIError(429, f"rate limit of {tenant.rate_limit_rps:g} requests/s reached for tenant "
                           f"'{tenant.name}'", "rate_limit_error", "rate_limit_exceeded",
                           headers={"retry-after": str(max(1, wait))})
        self._buckets[tenant.name] = [tokens - 1.0, now]

    def admit(self, model: str, priority: str) -> None:
        if PRIORITIES.index(priority) >= SHED_FROM and self.backends.pool(model).saturated:
            self.metrics.shed.labels(priority).inc()
            raise APIError(429, f"'{model}' is saturated: {priority} requests are shed until it has room",
                           "rate_limit_error", "overloaded", headers={"retry-after": str(RETRY_AFTER_S)})

    async def reserve(self, tenant: Tenant, usd: float):
        limits = tenant.limits()
        if not limits:
            return None
        got = await self.ledger.reserve(tenant.name, usd, limits)
        if isinstance(got, Denied):
            raise APIError(429, f"budget of tenant '{tenant.name}' exhausted for {got.period}: "
                           f"${got.remaining_usd:.6f} left of ${got.limit_usd:g} "
                           f"(this request may cost up to ${usd:.6f})", "insufficient_quota", "insufficient_quota",
                           headers={"x-fleetwise-budget-remaining-usd": f"{got.remaining_usd:.6f}"})
        return got

    def meter(self, row: UsageRecord) -> None:
        m = self.metrics
        m.cost.labels(row.tenant, row.model).inc(row.cost_usd)
        m.tokens.labels(row.tenant, row.model, "prompt").inc(row.prompt_tokens)
        m.tokens.labels(row.tenant, row.model, "completion").inc(row.completion_tokens)
        if self.usage is not None:
            self._usage_rows.append(row)

    async def flush_usage(self) -> None:
        if self.usage is not None and self._usage_rows:
            rows, self._usage_rows = self._usage_rows, []
            await self.usage.record(rows)


def _memory_ledger():
    from fleetwise.gateway.ledger import MemoryLedger

    return MemoryLedger()


def _routers(cfg: GatewayFile) -> dict:
    if not cfg.routes:
        return {}
    from fleetwise.gateway.router import Router

    return {name: Router.for_route(route) for name, route in cfg.routes.items()}


# -- parsing ------------------------------------------------------------------------------------------------
@dataclass
class Call:
    """One validated request."""

    chat: bool
    body: dict
    requested: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    max_tokens: int
    priority: str
    no_cache: bool
    no_store: bool
    ttl_s: float | None


def parse(raw: bytes, chat: bool, tenant: Tenant, headers: dict[str, str], default_max_tokens: int) -> Call:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required and must be a string", param="model")
    key = "messages" if chat else "prompt"
    content = body.get(key)
    if chat and not (isinstance(content, list) and content and all(isinstance(m, dict) for m in content)):
        raise APIError(400, "'messages' must be a non-empty list of message objects", param="messages")
    if not chat and not isinstance(content, (str, list)):
        raise APIError(400, "'prompt' must be a string, a list of strings or a list of token ids", param="prompt")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or not 1 <= max_tokens <= 10_000_000):
        raise APIError(400, "'max_tokens' must be an integer >= 1", param="max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    priority = body.pop("priority", None) or headers.get("x-priority") or tenant.priority
    if priority not in PRIORITIES:
        raise APIError(400, f"'priority' must be one of {', '.join(PRIORITIES)}", param="priority")
    opts = body.pop("cache", None) or {}
    if not isinstance(opts, dict):
        raise APIError(400, "'cache' must be an object such as {\"no-cache\": true, \"ttl\": 60}", param="cache")
    ttl = opts.get("ttl")
    if ttl is not None and not (isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 <= ttl < 1e9):
        raise APIError(400, "'cache.ttl' must be a number of seconds >= 0", param="cache.ttl")
    so = body.get("stream_options") or {}
    return Call(chat, body, model, stream, bool(isinstance(so, dict) and so.get("include_usage")),
                _prompt_tokens(content, chat), max_tokens or default_max_tokens, priority,
                bool(opts.get("no-cache")), bool(opts.get("no-store")), ttl)


def _prompt_tokens(content, chat: bool) -> int:
    """Prompt tokens by the emulator's rule (ceil(UTF-8 bytes / 4) + 3 per chat message; token ids as given):
    an estimate for the worst-case reservation, settled to the backend's own count after."""
    from fleetwise.traffic.tokens import chat_tokens, text_tokens

    if chat:
        return chat_tokens(content)
    if isinstance(content, str):
        return text_tokens(content)
    if content and all(isinstance(x, int) for x in content):
        return len(content)
    return sum(text_tokens(x) if isinstance(x, str) else len(x) if isinstance(x, list) else 0 for x in content)


# -- upstream -----------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """How an upstream call ended."""

    status: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    finish_reason: str | None = None
    model: str = ""
    error: APIError | None = None
    events: list[bytes] = field(default_factory=list)  # the SSE data payloads (cacheable)
    upstream_s: float = 0.0
    pieces: int = 0  # content events since the last usage report (tokens when a backend is lost before it)
    counted: int = 0  # completion tokens reported by finished attempts
    token_ids: list[int] = field(default_factory=list)  # generated ids (``return_token_ids``): a resume's prompt


async def stream_upstream(gw: Gateway, call: Call, model: str, sink) -> Outcome:
    """Send ``call`` to the least busy backend of ``model`` as a stream with usage; hand each SSE data
    payload to ``sink`` (an async callable) as it arrives; on a backend lost mid-stream, resume on another
    (prompt + the output so far: text for chat and text prompts; for a prompt of token ids, the generated ids,
    which the gateway asks the backend for with vLLM's ``return_token_ids``); return the outcome.

    A backend that refuses the request before answering - connection refused (gone before the controller's
    list said so), or 503 (starting, reclaimed) - saw none of it: the request goes to the next backend,
    whatever its prompt, and the refusing one takes no new request for ``EJECT_S``."""
    out, tried, without_ids = Outcome(model=model), set(), set()
    pool = gw.backends.pool(model)
    while True:
        backend = pool.pick(frozenset(tried))
        if backend is None:
            out.error = out.error or APIError(503, f"no backend of '{model}' can take the request now",
                                              "server_error", "no_backend", headers={"retry-after": "1"})
            return out
        tried.add(backend.url)
        plain = backend.url in without_ids
        body = _upstream_body(call, model, out, backend.token_ids and not plain)
        ended = await _one_upstream(gw, backend, call, body, out, sink)
        if ended == DONE and out.status == 400 and body.get("return_token_ids") \
                and not call.body.get("return_token_ids"):  # a 400 answers before any token: nothing was sent on
            without_ids.add(backend.url)  # a strict server may refuse the field the gateway added: try without
            tried.discard(backend.url)
            continue
        if plain and out.status == 200:
            backend.token_ids = False  # it was the field: never send it to this backend again
        if ended == REFUSED:
            backend.eject(EJECT_S)
            gw.metrics.rerouted.inc()
            continue  # out.error stays set: it is the answer if no backend is left
        if ended == LOST:  # no usage from the lost attempt: its tokens are its ids, else its content events
            ids = _prompt_ids(call) is not None and out.token_ids
            out.completion_tokens = out.counted = len(out.token_ids) if ids else out.counted + out.pieces
            out.pieces = 0
        if ended != LOST:
            out.prompt_tokens = out.prompt_tokens or call.prompt_tokens
            return out
        if not (_resumable(call, out) and out.error is None):
            out.error = out.error or APIError(502, f"backend {backend.url} was lost mid-answer and the request "
                                                   "cannot be resumed elsewhere", "server_error", "backend_lost")
            return out
        gw.metrics.resumed.inc()


def _upstream_body(call: Call, model: str, so_far: Outcome, token_ids: bool = True) -> dict:
    body = dict(call.body, model=model, stream=True, stream_options={"include_usage": True})
    ids = _prompt_ids(call)
    if ids is not None and token_ids:
        body["return_token_ids"] = True  # the generated ids: what a resume elsewhere appends to the prompt
    if so_far.text or so_far.token_ids:  # resume: the prompt plus what was generated, for the tokens still owed
        left = max(1, call.max_tokens - so_far.completion_tokens)
        body["max_tokens"] = left
        body.pop("max_completion_tokens", None)
        if isinstance(body.get("min_tokens"), int):  # vLLM's extension: what is still owed of it
            body["min_tokens"] = min(left, max(0, body["min_tokens"] - so_far.completion_tokens))
        if call.chat:
            body["messages"] = [*call.body["messages"], {"role": "assistant", "content": so_far.text}]
            body["continue_final_message"], body["add_generation_prompt"] = True, False
        elif ids is not None:
            body["prompt"] = ids + so_far.token_ids
        elif isinstance(call.body["prompt"], str):
            body["prompt"] = call.body["prompt"] + so_far.text
        else:  # one text in a list
            body["prompt"] = [call.body["prompt"][0] + so_far.text]
    return body


def _prompt_ids(call: Call) -> list[int] | None:
    return None if call.chat else prompt_token_ids(call.body.get("prompt"))


def _resumable(call: Call, so_far: Outcome) -> bool:
    """Whether the request can go on elsewhere from what was generated: chat and text prompts always; a
    prompt of token ids when the lost backend reported the id of every token it generated (vLLM < 0.10.2
    ignores ``return_token_ids``, and text cannot be appended to ids without the model's tokenizer)."""
    prompt = call.body.get("prompt")
    if call.chat or isinstance(prompt, str) or (isinstance(prompt, list) and len(prompt) == 1
                                                  and isinstance(prompt[0], str)):
        return True
    return _prompt_ids(call) is not None and (bool(so_far.token_ids) or so_far.completion_tokens == 0)


DONE, LOST, REFUSED = "done", "lost", "refused"
EJECT_S = 2.0  # seconds a backend that refused a request takes no new one (two polls of the controller's list)


async def _one_upstream(gw: Gateway, backend: Backend, call: Call, body: dict, out: Outcome, sink) -> str:
    """One attempt: ``DONE`` (answered, or failed in a way another backend would not fix), ``LOST`` (the
    backend went away after the answer began, so it may be resumed) or ``REFUSED`` (turned away unanswered:
    connection refused, or 503; ``out.error`` says how)."""
    import aiohttp

    work = call.prompt_tokens + call.max_tokens
    backend.outstanding += work
    began = time.perf_counter()
    path = "/v1/chat/completions" if call.chat else "/v1/completions"
    started = bool(out.text)
    out.error = None
    try:
        async with gw.session.post(backend.url + path, json=body) as resp:
            if resp.status != 200:
                out.status = resp.status
                out.error = _upstream_error(resp.status, await resp.read())
                return REFUSED if resp.status == 503 and not started else DONE
            out.status = 200
            strip = body.get("return_token_ids") and not call.body.get("return_token_ids")
            async for data in _sse(resp.content):
                started = True
                if data == b"[DONE]":
                    break
                await sink(_absorb(out, data, call.chat, strip))
        return LOST if out.finish_reason is None and started else DONE  # stopped before the answer ended
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        backend.failures += 1
        if started:
            return LOST
        out.status = 504 if isinstance(exc, asyncio.TimeoutError) else 502
        out.error = APIError(out.status, f"backend {backend.url} failed: {type(exc).__name__}", "server_error",
                             "upstream_error")
        return REFUSED if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError) else DONE
    finally:
        backend.outstanding -= work
        out.upstream_s += time.perf_counter() - began


async def _sse(content) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an SSE stream."""
    async for line in content:
        line = line.strip()
        if line.startswith(b"data:"):
            yield line[5:].strip()


def _absorb(out: Outcome, data: bytes, chat: bool, strip: bool = False) -> bytes:
    """Add one SSE payload to ``out``; return it as the client gets it (and the cache keeps it): with
    ``strip``, without the token ids the gateway asked for on its own behalf (the client did not); after a
    resume, with the usage of the whole answer - the prompt as the client sent it, every completion token of
    every attempt - not the last attempt's (whose prompt included the output so far)."""
    try:
        event = json.loads(data)
    except ValueError:
        return data
    rewrite = strip
    for choice in event.get("choices") or ():
        ids = choice.pop("token_ids", None) if strip else choice.get("token_ids")
        out.token_ids.extend(ids or ())
        if strip:
            choice.pop("prompt_token_ids", None)
    if strip:
        event.pop("prompt_token_ids", None)
    usage = event.get("usage")
    if usage:
        before = out.counted  # completion tokens of the attempts before this one (a resume's prompt holds them)
        out.prompt_tokens = max(1, int(usage.get("prompt_tokens") or 0) - before) if before else \
            int(usage.get("prompt_tokens") or 0)
        out.completion_tokens = out.counted = before + int(usage.get("completion_tokens") or 0)
        out.pieces = 0
        if before:
            event["usage"] = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                              "total_tokens": out.prompt_tokens + out.completion_tokens}
            rewrite = True
    if rewrite:
        data = json.dumps(event, separators=(",", ":")).encode()
    out.events.append(data)
    for choice in event.get("choices") or ():
        piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
        if piece:
            out.text += piece
            out.pieces += 1
        if choice.get("finish_reason"):
            out.finish_reason = choice["finish_reason"]
    out.model = event.get("model") or out.model
    return data


def _upstream_error(status: int, raw: bytes) -> APIError:
    try:
        err = json.loads(raw)["error"]
        return APIError(status if status < 500 else 502, str(err.get("message", ""))[:500],
                        str(err.get("type") or "upstream_error"), err.get("code"), err.get("param"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return APIError(502, f"backend answered HTTP {status}", "server_error", "upstream_error")


def assemble(call: Call, events: list[bytes]) -> dict:
    """A non-streamed answer from the stream's events (text joined, usage and finish reason kept)."""
    first = json.loads(events[0]) if events else {}
    out = Outcome()
    for data in events:
        _absorb(out, data, call.chat)
    choice = {"index": 0, "finish_reason": out.finish_reason, "logprobs": None}
    if call.chat:
        choice["message"] = {"role": "assistant", "content": out.text}
    else:
        choice["text"] = out.text
    return {"id": first.get("id", "fw-" + str(time.time_ns())), "object": "chat.completion" if call.chat
            else "text_completion", "created": first.get("created", int(time.time())),
            "model": first.get("model", call.requested), "choices": [choice],
            "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                      "total_tokens": out.prompt_tokens + out.completion_tokens}}


def is_usage_only(data: bytes) -> bool:
    return b'"usage"' in data and b'"choices":[]' in data.replace(b" ", b"")


# -- serving a request ----------------------------------------------------------------------------------------
async def handle(gw: Gateway, call: Call, tenant: Tenant, respond) -> None:
    """Route, admit, reserve, answer (cache / join / upstream), settle and meter one request."""
    model, route = gw.resolve(call.requested, call.body)
    if route:
        gw.metrics.routed.labels(route, model).inc()
    gw.rate_limit(tenant)
    gw.admit(model, call.priority)
    price = gw.price(model)
    worst = price.cost(call.prompt_tokens, call.max_tokens)
    hold = await gw.reserve(tenant, worst)
    saved_by, cost, outcome = "", 0.0, None
    try:
        if deterministic(call.body):
            outcome, saved_by = await _deterministic(gw, call, tenant, model, respond)
        else:
            outcome = await _direct(gw, call, model, respond)
        if outcome.error is not None and not outcome.events:
            raise outcome.error
        cost = 0.0 if saved_by in ("cache", "dedup") else price.cost(outcome.prompt_tokens,
                                                                         outcome.completion_tokens)
    finally:
        if hold is not None:
            await (gw.ledger.settle(hold, cost) if outcome is not None and outcome.events
                   else gw.ledger.release(hold))
    asked = gw.price(call.requested) if not route else gw.price(gw.router[route].route.strong)
    list_cost = asked.cost(outcome.prompt_tokens, outcome.completion_tokens)
    if route and not saved_by and model != gw.router[route].route.strong:
        saved_by = "route"
    respond.upstream_s = outcome.upstream_s
    gw.meter(UsageRecord(time.time(), tenant.name, model, call.requested, outcome.prompt_tokens,
                         outcome.completion_tokens, cost, list_cost, saved_by, outcome.status))


async def _direct(gw: Gateway, call: Call, model: str, respond) -> Outcome:
    """A request that cannot be shared: straight through, streamed as the client asked."""
    if not call.stream:
        out = await stream_upstream(gw, call, model, _ignore)
        if out.error is None or out.events:
            await respond.json(assemble(call, out.events))
        return out
    await respond.begin_stream()

    async def sink(data: bytes) -> None:
        if call.include_usage or not is_usage_only(data):
            await respond.event(data)

    out = await stream_upstream(gw, call, model, sink)
    await respond.end_stream(out.error)
    return out


async def _ignore(_data: bytes) -> None:
    return None


async def _deterministic(gw: Gateway, call: Call, tenant: Tenant, model: str, respond) -> tuple[Outcome, str]:
    """Cache, then single-flight: every request for the key reads the same upstream stream."""
    key = cache_key(tenant.cache_scope, model, call.body)
    if not call.no_cache:
        hit = await gw.cache.get(key)
        if hit is not None:
            gw.metrics.cache_hits.inc()
            events = [e for e in hit.split(b"\n") if e]
            await _replay(call, events, respond)
            usage = assemble(call, events)["usage"]
            return Outcome(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                           events=events), "cache"

    async def produce(flight) -> Outcome:
        async def sink(data: bytes) -> None:
            flight.push(data)
        out = await stream_upstream(gw, call, model, sink)
        if out.error is None and out.finish_reason is not None and not call.no_store:
            ttl = call.ttl_s if call.ttl_s is not None else gw.cfg.cache.ttl_s
            await gw.cache.set(key, b"\n".join(out.events), ttl)
        return out

    flight, leader = gw.flights.join(key if gw.cfg.single_flight else f"{key}:{id(call)}", produce)
    if not leader:
        gw.metrics.dedup_joined.inc()
    if call.stream:
        await respond.begin_stream()
        async for data in flight.follow():
            if call.include_usage or not is_usage_only(data):
                await respond.event(data)
    else:
        async for _ in flight.follow():
            pass
    out = flight.result if isinstance(flight.result, Outcome) else Outcome(error=APIError(
        502, f"upstream call failed: {type(flight.error).__name__}", "server_error", "upstream_error"))
    if call.stream:
        await respond.end_stream(out.error)
    elif out.events:
        await respond.json(assemble(call, out.events))
    return out, "" if leader else "dedup"


async def _replay(call: Call, events: list[bytes], respond) -> None:
    if call.stream:
        await respond.begin_stream()
        for data in events:
            if call.include_usage or not is_usage_only(data):
                await respond.event(data)
        await respond.end_stream(None)
    else:
        await respond.json(assemble(call, events))


# -- ASGI -----------------------------------------------------------------------------------------------------
class Responder:
    """Writes one answer to an ASGI ``send``: JSON, or an SSE stream; remembers whether it began."""

    def __init__(self, send) -> None:
        self.send = send
        self.started = self.ended = False
        self.status = 200
        self.upstream_s = 0.0

    async def json(self, obj: dict, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.started, self.ended, self.status = True, True, status
        await self.send({"type": "http.response.start", "status": status, "headers": hdrs})
        await self.send({"type": "http.response.body", "body": body})

    async def begin_stream(self) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": 200,
                         "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})

    async def event(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

    async def end_stream(self, error: APIError | None) -> None:
        if self.ended:
            return
        self.ended = True
        tail = b"data: " + error.body() + b"\n\n" if error is not None else b""
        await self.send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})


class _Completions:
    def __init__(self, gw: Gateway, chat: bool) -> None:
        self.gw, self.chat = gw, chat

    async def __call__(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        respond = Responder(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        try:
            if scope.get("method") != "POST":
                raise APIError(405, "use POST")
            tenant = self.gw.tenant_for(headers.get("authorization"))
            raw = await _read_body(receive, self.gw.cfg.max_body_bytes)
            call = parse(raw, self.chat, tenant, headers, self.gw.cfg.default_max_tokens)
            await handle(self.gw, call, tenant, respond)
        except APIError as err:
            await _fail(respond, err)
        except Exception as exc:  # noqa: BLE001 - a bug: still an error object, and the gateway keeps serving
            await _fail(respond, APIError(500, f"internal error: {type(exc).__name__}", "server_error"))
        finally:
            self.gw.metrics.requests.labels(str(respond.status)).inc()
            self.gw.metrics.overhead.observe(max(0.0, time.perf_counter() - t0 - respond.upstream_s))


async def _fail(respond: Responder, err: APIError) -> None:
    if respond.ended:
        return
    if respond.started:  # mid-stream: the error becomes the stream's last event
        await respond.end_stream(err)
        return
    await respond.json(json.loads(err.body()), err.status, err.headers)


async def _read_body(receive, limit: int) -> bytes:
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise APIError(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body is over the {limit:,}-byte limit", code="body_too_large")
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


class _Router:
    """Bare-ASGI dispatch of the completion paths; everything else goes to FastAPI."""

    def __init__(self, app: FastAPI, hot: dict) -> None:
        self.app, self.hot = app, hot

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            endpoint = self.hot.get(scope["path"].rstrip("/"))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(gw: Gateway):
    """The gateway's ASGI app (FastAPI for the small paths, bare ASGI for the completion paths)."""
    import aiohttp

    @asynccontextmanager
    async def lifespan(_app):
        timeout = aiohttp.ClientTimeout(total=gw.cfg.upstream_timeout_s, sock_connect=5.0)
        gw.session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        gw.ledger = await gw.ledger.open() if hasattr(gw.ledger, "open") else gw.ledger
        if gw.usage is not None and hasattr(gw.usage, "open"):
            gw.usage = await gw.usage.open()
        if gw.cfg.controller:
            gw.backends.follow(gw.cfg.controller, gw.session)
        gw.backends.watch_load(gw.session)
        flusher = asyncio.create_task(_flush_every(gw, 1.0))
        try:
            yield
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await gw.flush_usage()
            await gw.backends.aclose()
            await gw.flights.aclose()
            await gw.session.close()
            for closable in (gw.ledger, gw.usage, gw.cache):
                if closable is not None and hasattr(closable, "aclose"):
                    await closable.aclose()

    app = FastAPI(title="fleetwise gateway", lifespan=lifespan)

    @app.get("/v1/models")
    async def models():
        ids = [*gw.backends.models(), *gw.router]
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fleetwise"} for m in ids]}

    @app.get("/v1/usage")
    async def usage(request: Request, since: float = Query(0.0, ge=0), until: float | None = Query(None)):
        try:
            tenant = gw.tenant_for(request.headers.get("authorization"))
        except APIError as err:
            return JSONResponse(json.loads(err.body()), err.status)
        if gw.usage is None:
            return JSONResponse({"error": {"message": "usage is not recorded (start the gateway with --state)",
                                           "type": "invalid_request_error", "param": None, "code": None}}, 404)
        from fleetwise.gateway.usage import usage_summary

        await gw.flush_usage()
        rows = await gw.usage.query(tenant.name, since, until)
        return usage_summary(rows)

    @app.get("/metrics")
    async def metrics():
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": gw.backends.models()}

    hot = {"/v1/chat/completions": _Completions(gw, True), "/v1/completions": _Completions(gw, False)}
    router = _Router(app, hot)
    router.state = app.state
    return router


async def _flush_every(gw: Gateway, period_s: float) -> None:
    while True:
        await asyncio.sleep(period_s)
        try:
            await gw.flush_usage()
        except Exception:  # noqa: BLE001, S110 - the usage store is down: keep the rows for the next try
            pass
