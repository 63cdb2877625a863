"""Worker metrics read from a Prometheus server that already scrapes the workers (HTTP API, instant query).

One ``GET /api/v1/query`` per step reads every worker at once (``POST`` when a large fleet makes it long)::

    {__name__=~"<every stored name of every family>", instance=~"<worker addresses>"}
      or label_replace(max by (instance) (timestamp(up{instance=~"<worker addresses>"})),
                       "__name__", "fleetwise:sample_time", "", "")

The left side is each series' latest sample under Prometheus's own staleness rules (a series that vanished
from its target, or whose target is down, is not returned). The right side is, per worker, the time of its
newest scrape (``up`` is written once per scrape of a target, at the scrape's timestamp): an instant query's
sample values carry the evaluation time, not the scrape time, and ``timestamp()`` of the metrics themselves
drops their names, so their label sets collide. Both sides are read in one query, so values and time come from
the same scrape (Prometheus isolates a query from half-appended scrapes).

Stored names are what the text exposition becomes in the TSDB: counters end in ``_total``, histograms are
``_bucket`` (with ``le``) / ``_sum`` / ``_count`` series. Every alias of
:data:`fleetwise.control.names.ALIASES` is asked for, and per worker and family the first name present in
alias order is used (a vLLM exporting a deprecated name next to its new one is not counted twice).

A worker is matched by one target label: ``instance`` by default, which Prometheus sets to the target's
host:port, i.e. the worker URL's; or, with ``key="id"``, a target label holding the worker id (a Kubernetes
pod name copied by ``relabel_configs`` - ``metric_relabel_configs`` would not put it on ``up``). Series of one
worker are summed over their other labels (``finished_reason``, ``engine``, ``model_name``), except the
KV-cache usage, a 0..1 share, which is averaged over engines.

Failure policy: a Prometheus that cannot be reached or answers garbage (connection refused, timeout, HTTP
error, not JSON, ``"status": "error"``, an unexpected shape) yields an empty sample plus a logged warning
(once per distinct failure, and an info line on recovery) - the same as every worker being unreachable, which
the controller already handles by holding the fleet (``hold_stale``). Raising instead would give the
controller a second failure path for the same situation. Mistakes the user can fix before the first step (a
URL that is not http(s)://host[:port][/prefix], a bad label name, a non-positive age or timeout) raise
:class:`~fleetwise.errors.ConfigError` at construction.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from fleetwise.control.names import ALIASES
from fleetwise.control.types import Histogram, Worker, WorkerMetrics
from fleetwise.errors import ConfigError

log = logging.getLogger(__name__)

TIME_SERIES = "fleetwise:sample_time"  # the query's per-worker scrape-time pseudo-series
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_MAX_GET_QUERY = 4000  # longer queries (fleets of hundreds) go as a POST form, which the API also accepts

# canonical family -> (WorkerMetrics field, kind)
FAMILIES: dict[str, tuple[str, str]] = {
    "vllm:request_success": ("finished", "counter"),
    "vllm:prompt_tokens": ("prompt_tokens", "counter"),
    "vllm:generation_tokens": ("generation_tokens", "counter"),
    "vllm:num_requests_running": ("running", "gauge"),
    "vllm:num_requests_waiting": ("waiting", "gauge"),
    "vllm:kv_cache_usage_perc": ("kv_usage", "gauge"),
    "vllm:time_to_first_token_seconds": ("ttft", "histogram"),
    "vllm:inter_token_latency_seconds": ("itl", "histogram"),
    "vllm:request_time_per_output_token_seconds": ("tpot", "histogram"),
}
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _stored_names() -> dict[str, tuple[str, int, str]]:
    """Every TSDB series name the source reads -> (canonical family, alias rank, part suffix)."""
    out: dict[str, tuple[str, int, str]] = {}
    for canonical, (_, kind) in FAMILIES.items():
        for rank, name in enumerate((canonical, *ALIASES.get(canonical, ()))):
            for suffix in _SUFFIXES[kind]:
                out[name + suffix] = (canonical, rank, suffix)
    return out


STORED_NAMES = _stored_names()


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def regex_alternation(values: Iterable[str]) -> str:
    """An RE2 regex matching exactly one of ``values`` (PromQL anchors label regexes at both ends)."""
    return "|".join(_RE2_SPECIAL.sub(r"\\\1", v) for v in sorted(set(values)))


def worker_address(url: str) -> str:
    """``host:port`` of a worker URL, as Prometheus writes a target's ``instance`` label ("" if no host)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_query(label: str, values: Iterable[str]) -> str:
    """The one instant query that reads every family of the given workers and their scrape time."""
    selector = (f"{{__name__=~{promql_string(regex_alternation(STORED_NAMES))}, "
                f"{label}=~{promql_string(regex_alternation(values))}}}")
    targets = f"up{{{label}=~{promql_string(regex_alternation(values))}}}"
    return (f'{selector} or label_replace(max by ({label}) (timestamp({targets})), '
            f'"__name__", "{TIME_SERIES}", "", "")')


class PrometheusSource:
    """A :class:`~fleetwise.control.types.MetricsSource` backed by Prometheus's HTTP query API."""

    def __init__(self, url: str, *, label: str = "instance", key: str = "address", max_age_s: float = 60.0,
                 timeout_s: float = 5.0, headers: Mapping[str, str] | None = None,
                 transport=None, clock: Callable[[], float] = time.time) -> None:
        """Check the options; nothing is contacted until :meth:`sample`.

        Args:
            url: Prometheus's base URL (``http://prometheus:9090``, or with a route prefix ``.../prom``).
            label: the series label that names a worker.
            key: what that label holds - ``address`` (the worker URL's host:port, Prometheus's ``instance``)
                or ``id`` (the worker id, e.g. a pod name copied into a label by relabelling).
            max_age_s: a worker whose newest scrape is older than this is left out of the sample.
            timeout_s: httpx's timeout - for connecting, and for each read and write.
            headers: sent with every query (``Authorization`` for a managed Prometheus).
            transport: an ``httpx.AsyncBaseTransport`` (tests pass ``httpx.MockTransport``).
            clock: wall time in epoch seconds, for the age check.

        Raises:
            ConfigError: a malformed URL, label name or key, or a non-positive age or timeout.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"Prometheus URL must look like http://host:9090 (got {url!r})")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ConfigError(f"Prometheus URL has a bad port: {url!r}") from None
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise ConfigError(f"not a usable Prometheus label name: {label!r}")
        if key not in ("address", "id"):
            raise ConfigError(f"key must be 'address' or 'id' (got {key!r})")
        if not (max_age_s > 0 and math.isfinite(max_age_s)):
            raise ConfigError(f"max age must be a finite number of seconds > 0 (got {max_age_s})")
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ConfigError(f"timeout must be a finite number of seconds > 0 (got {timeout_s})")
        self.url = url.rstrip("/")
        self.label, self.key = label, key
        self.max_age_s, self.timeout_s = float(max_age_s), float(timeout_s)
        self.headers = dict(headers or {})
        self.transport = transport
        self.clock = clock
        self._failing: str | None = None

    def label_value(self, worker: Worker) -> str:
        """The value of :attr:`label` on the worker's series ("" when not known yet)."""
        return worker_address(worker.url) if self.key == "address" else worker.id

    async def sample(self, workers: Sequence[Worker]) -> dict[str, WorkerMetrics]:
        """The newest metrics of each worker Prometheus has fresh data for, by worker id."""
        ids: dict[str, str] = {}
        for w in workers:
            value = self.label_value(w)
            if value:
                ids[value] = w.id
        if not ids:
            return {}
        try:
            result = await self._query(build_query(self.label, ids))
        except _QueryFailed as exc:
            self._report(str(exc))
            return {}
        self._report(None)
        return metrics_from_vector(result, ids, self.label, now=self.clock(), max_age_s=self.max_age_s)

    async def _query(self, query: str) -> list:
        """``data.result`` of an instant query whose answer is a vector."""
        import httpx

        endpoint = self.url + "/api/v1/query"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers,
                                         transport=self.transport) as client:
                if len(query) <= _MAX_GET_QUERY:
                    resp = await client.get(endpoint, params={"query": query})
                else:
                    resp = await client.post(endpoint, data={"query": query})
        except httpx.HTTPError as exc:
            raise _QueryFailed(f"{type(exc).__name__}: {exc}") from None
        return _vector(resp)

    def _report(self, error: str | None) -> None:
        """Log a failure when it starts or changes, and the recovery - not once per step."""
        if error is not None and error != self._failing:
            log.warning("Prometheus at %s unusable, no worker metrics this step: %s", self.url, error)
        elif error is None and self._failing is not None:
            log.info("Prometheus at %s answers again", self.url)
        self._failing = error


class _QueryFailed(Exception):
    """Prometheus did not give a usable answer (never leaves this module)."""


def _vector(resp) -> list:
    """The vector result of a query response, or :class:`_QueryFailed` saying why not."""
    try:
        body = resp.json()
    except ValueError:
        raise _QueryFailed(f"HTTP {resp.status_code}, not JSON: {resp.text[:200]!r}") from None
    if not isinstance(body, dict):
        raise _QueryFailed(f"HTTP {resp.status_code}, unexpected JSON {type(body).__name__}")
    if body.get("status") != "success":
        raise _QueryFailed(f"HTTP {resp.status_code}, {body.get('errorType', 'error')}: "
                           f"{body.get('error', body.get('status'))}")
    data = body.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if result is None or data.get("resultType") != "vector" or not isinstance(result, list):
        raise _QueryFailed("answer is not an instant vector")
    return result


def metrics_from_vector(result: Sequence[Mapping], ids: Mapping[str, str], label: str, *, now: float,
                        max_age_s: float) -> dict[str, WorkerMetrics]:
    """Map an instant query's vector (see the module docstring) to fresh metrics per worker id.

    Args:
        result: ``data.result`` - items ``{"metric": {labels}, "value": [time, "value"]}``.
        ids: label value -> worker id, for the workers asked about.
        label: the label naming a worker.
        now: epoch seconds; a worker scraped more than ``max_age_s`` before it is left out.

    Returns:
        worker id -> metrics; a worker without a scrape-time series or any known family is left out.
    """
    times: dict[str, float] = {}
    # (worker, family) -> (alias rank, [(suffix, labels, value)]) of the best-ranked name seen so far
    chosen: dict[tuple[str, str], tuple[int, list]] = {}
    for item in result:
        labels = item.get("metric") or {}
        worker = ids.get(labels.get(label, ""))
        value = _value(item)
        if worker is None or value is None:
            continue
        name = labels.get("__name__", "")
        if name == TIME_SERIES:
            times[worker] = value
            continue
        if name not in STORED_NAMES:
            continue
        family, rank, suffix = STORED_NAMES[name]
        best = chosen.get((worker, family))
        if best is None or rank < best[0]:
            best = chosen[(worker, family)] = (rank, [])
        if rank == best[0]:
            best[1].append((suffix, labels, value))
    out: dict[str, WorkerMetrics] = {}
    for worker, t in times.items():
        if now - t > max_age_s:
            continue
        fields = {FAMILIES[f][0]: _combine(f, samples)
                  for (w, f), (_, samples) in chosen.items() if w == worker}
        fields = {k: v for k, v in fields.items() if v is not None}
        if fields:
            out[worker] = WorkerMetrics(t=t, **fields)
    return out


def _value(item: Mapping) -> float | None:
    """The sample value of a vector item (Prometheus writes it as a string), None when malformed."""
    try:
        return float(item["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _combine(family: str, samples: list[tuple[str, Mapping, float]]) -> float | Histogram | None:
    """One family's samples of one worker reduced to its WorkerMetrics value."""
    field, kind = FAMILIES[family]
    if kind != "histogram":
        values = [v for _, _, v in samples]
        return sum(values) / len(values) if field == "kv_usage" else math.fsum(values)
    by_le: dict[float, float] = {}
    total = 0.0
    for suffix, labels, v in samples:
        if suffix == "_sum":
            total += v
        elif suffix == "_bucket":
            try:
                le = float(labels["le"])
            except (KeyError, ValueError):
                continue
            by_le[le] = by_le.get(le, 0.0) + v
    if not by_le or not math.isinf(max(by_le)):
        return None  # no buckets, or no +Inf bucket: not a histogram Histogram.count can read
    bounds = tuple(sorted(by_le))
    return Histogram(bounds, tuple(by_le[b] for b in bounds), total)
