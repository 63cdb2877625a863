"""Direct scrape: read each worker's ``/metrics`` (Prometheus text format) - AIBrix's way, no Prometheus needed.

The text is parsed with prometheus_client's own parser; names go through the alias table of
:mod:`fleetwise.enginemetrics`, so vLLM V0/V1 and SGLang workers read the same.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence

from fleetwise.control.types import Histogram, Worker, WorkerMetrics
from fleetwise.enginemetrics import LOAD_GAUGES, canonical

_COUNTERS = {"vllm:request_success": "finished", "vllm:prompt_tokens": "prompt_tokens",
             "vllm:generation_tokens": "generation_tokens"}
_GAUGES = LOAD_GAUGES
_HISTOGRAMS = {"vllm:time_to_first_token_seconds": "ttft", "vllm:inter_token_latency_seconds": "itl",
               "vllm:request_time_per_output_token_seconds": "tpot"}


def parse_metrics(text: str, t: float) -> WorkerMetrics:
    """One worker's metrics from its ``/metrics`` text, summed over label sets (engines, finish reasons)."""
    from prometheus_client.parser import text_string_to_metric_families

    scalars: dict[str, float] = {}
    kv_parts = 0  # KV usage is a fraction per engine: averaged over engines, not summed
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        name = canonical(family.name)
        field = _COUNTERS.get(name) or _GAUGES.get(name)
        if field:
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                scalars[field] = scalars.get(field, 0.0) + s.value
                kv_parts += field == "kv_usage"
        elif name in _HISTOGRAMS:
            field = _HISTOGRAMS[name]
            by_le = buckets.setdefault(field, {})
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    by_le[le] = by_le.get(le, 0.0) + s.value
                elif s.name.endswith("_sum"):
                    sums[field] = sums.get(field, 0.0) + s.value
    if kv_parts > 1:
        scalars["kv_usage"] /= kv_parts
    hists = {f: Histogram(tuple(sorted(b)), tuple(b[k] for k in sorted(b)), sums.get(f, 0.0))
             for f, b in buckets.items() if b}
    return WorkerMetrics(t=t, **scalars, **hists)


class ScrapeSource:
    """Scrapes every worker's ``/metrics`` concurrently (a worker that does not answer in ``timeout_s`` is left
    out of the sample; the controller holds the fleet on missing data)."""

    def __init__(self, timeout_s: float = 2.0, path: str = "/metrics") -> None:
        self.timeout_s = timeout_s
        self.path = path
        self._client = None
        self._loop = None

    async def sample(self, workers: Sequence[Worker]) -> dict[str, WorkerMetrics]:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # a client serves only the loop it was made in
            self._client, self._loop = httpx.AsyncClient(timeout=self.timeout_s), loop
        live = [w for w in workers if w.url]
        got = await asyncio.gather(*(self._one(w) for w in live))
        return {w.id: m for w, m in zip(live, got) if m is not None}

    async def _one(self, worker: Worker) -> WorkerMetrics | None:
        import httpx

        try:
            resp = await self._client.get(worker.url.rstrip("/") + self.path)
            if resp.status_code != 200:
                return None
            text = resp.text
        except (httpx.HTTPError, OSError):
            return None
        try:  # a scrape of a worker's whole text takes ~1 ms: fine on the loop at a 10 s cadence
            return parse_metrics(text, time.time())
        except (ValueError, KeyError):  # not Prometheus text: treat as unreadable
            return None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def quantile(hist: Histogram, q: float) -> float:
    """The ``q`` quantile of a cumulative histogram by linear interpolation within the bucket, as PromQL's
    ``histogram_quantile`` does (the +Inf bucket returns the largest finite bound). NaN if empty."""
    total = hist.count
    if not total > 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(hist.bounds, hist.counts):
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def share_within(hist: Histogram, limit: float) -> float:
    """Fraction of observations at or under ``limit`` (interpolated within its bucket). NaN if empty."""
    total = hist.count
    if not total > 0:
        return math.nan
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(hist.bounds, hist.counts):
        if limit <= bound:
            if math.isinf(bound):
                return prev_count / total
            return (prev_count + (count - prev_count) * (limit - prev_bound) / (bound - prev_bound)) / total
        prev_bound, prev_count = bound, count
    return 1.0


def delta(new: Histogram | None, old: Histogram | None) -> Histogram | None:
    """Observations between two scrapes of the same histogram (None when bounds differ or a reset happened)."""
    if new is None:
        return None
    if old is None or old.bounds != new.bounds:
        return new if old is None else None
    counts = tuple(a - b for a, b in zip(new.counts, old.counts))
    if any(c < 0 for c in counts):  # counter reset: the worker restarted
        return new
    return Histogram(new.bounds, counts, new.total - old.total)


def merge(hists: Sequence[Histogram | None]) -> Histogram | None:
    """Sum of histograms with the same bounds (those with other bounds are skipped)."""
    present = [h for h in hists if h is not None]
    if not present:
        return None
    bounds = present[0].bounds
    same = [h for h in present if h.bounds == bounds]
    counts = tuple(sum(c) for c in zip(*(h.counts for h in same)))
    return Histogram(bounds, counts, sum(h.total for h in same))
