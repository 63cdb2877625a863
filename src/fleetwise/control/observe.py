"""From two scrapes of every worker to what the controller decides on: arrivals, queue, latency over the window.

vLLM exports no arrival counter; arrivals over a window are the requests that finished plus the growth of
those in the system (running + waiting). Latency quantiles and SLO attainment come from the difference of the
TTFT / inter-token-latency histograms between the two scrapes, summed over workers, as PromQL's
``histogram_quantile(0.95, sum by (le) (rate(...[window])))`` would give. The decode-speed check uses each
request's mean time per output token (``tpot``, what a TPOT SLO is about) where the engine exports it, else
the per-token gaps (``itl``, stricter: a p95 of single gaps catches every scheduling hiccup).

With ``time_scale`` X (emulated workers whose clock runs X times faster), rates are per *emulated* second:
the counts are divided by the wall window times X. Latencies the workers report are already emulated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetwise.control.scrape import delta, merge, quantile, share_within
from fleetwise.control.types import SERVING, Worker, WorkerMetrics


@dataclass(frozen=True)
class Observation:
    """The fleet over one window. NaN: no observation in the window (no request finished, say)."""

    t: float  # wall time of the newest scrape
    window_s: float  # emulated seconds the rates are over
    arrivals_rps: float
    finished_rps: float
    generation_tps: float
    running: int
    waiting: int
    kv_usage_max: float
    ttft_p95_s: float
    itl_p95_s: float
    tpot_p95_s: float  # per-request TPOT (NaN: the engine does not export it)
    ttft_attainment: float  # share of first tokens within the TTFT target
    itl_attainment: float
    reporting: int  # serving workers with a complete scrape
    serving: int  # serving workers the actuator reports
    stale: bool  # a serving worker did not report or reported NaN: hold the fleet

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def observe(workers: Sequence[Worker], now: Mapping[str, WorkerMetrics], before: Mapping[str, WorkerMetrics],
            ttft_target_s: float, itl_target_s: float, time_scale: float = 1.0) -> Observation:
    """The window between ``before`` and ``now`` (scrapes by worker id) over the workers listed."""
    serving = [w for w in workers if w.state == SERVING]
    ok = [w.id for w in workers if w.id in now and now[w.id].complete]
    stale = any(w.id not in ok for w in serving)
    t_now = max((now[i].t for i in ok), default=math.nan)
    pairs = [(now[i], before.get(i)) for i in ok]
    spans = [m.t - b.t for m, b in pairs if b is not None and m.t > b.t]
    wall = sum(spans) / len(spans) if spans else math.nan
    finished = arrived = generated = 0.0
    for m, b in pairs:
        if b is None or m.finished < b.finished:  # new worker or restarted: everything since its start
            finished += m.finished
            arrived += m.finished + m.running + m.waiting
            generated += _zero(m.generation_tokens)
        else:
            finished += m.finished - b.finished
            arrived += (m.finished - b.finished) + (m.running + m.waiting) - (b.running + b.waiting)
            generated += _zero(m.generation_tokens) - _zero(b.generation_tokens)
    span = wall * time_scale
    rate = (lambda x: max(x, 0.0) / span) if span > 0 else (lambda x: math.nan)
    ttft = merge([delta(m.ttft, b.ttft if b else None) for m, b in pairs])
    itl = merge([delta(m.itl, b.itl if b else None) for m, b in pairs])
    tpot = merge([delta(m.tpot, b.tpot if b else None) for m, b in pairs])
    kv = [now[i].kv_usage for i in ok if math.isfinite(now[i].kv_usage)]
    return Observation(
        t=t_now, window_s=span if span > 0 else math.nan, arrivals_rps=rate(arrived), finished_rps=rate(finished),
        generation_tps=rate(generated), running=int(sum(now[i].running for i in ok)),
        waiting=int(sum(now[i].waiting for i in ok)), kv_usage_max=max(kv, default=math.nan),
        ttft_p95_s=quantile(ttft, 0.95) if ttft else math.nan, itl_p95_s=quantile(itl, 0.95) if itl else math.nan,
        tpot_p95_s=quantile(tpot, 0.95) if tpot else math.nan,
        ttft_attainment=share_within(ttft, ttft_target_s) if ttft else math.nan,
        itl_attainment=share_within(itl, itl_target_s) if itl else math.nan,
        reporting=sum(1 for w in serving if w.id in ok), serving=len(serving), stale=stale)


def _zero(x: float) -> float:
    return x if math.isfinite(x) else 0.0
