"""Serving metrics of a replica in the four benchmark modes: offline, rate, concurrency, static.

Conventions match the measured data fleetwise is calibrated on (TensorRT-LLM's benchmark tables):
output throughput is output tokens/s of the whole replica (all its GPUs); TTFT is arrival to first
token; ITL/TPOT is the gap between consecutive output tokens; E2E is arrival to last token.
With ``num_gpus > tp`` the replica is ``num_gpus // tp`` data-parallel groups, each simulated with
its share of the load and throughputs summed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.perf.replica import Replica
from fleetwise.perf.serving import Requests, SimResult, simulate

Mode = Literal["offline", "rate", "concurrency", "static"]
MODES: tuple[str, ...] = ("offline", "rate", "concurrency", "static")

# Requests per simulated run, by mode, unless the caller says otherwise. Rate mode replays 500
# requests like TensorRT-LLM's online-serving table; offline runs long enough for steady state.
DEFAULT_REQUESTS = {"offline": 1000, "rate": 500, "concurrency": 500}
MAX_REQUESTS = 1_000_000
"""Requests one prediction simulates at most: a million take seconds; far more would run for hours."""
MAX_TOKENS = 100_000_000
"""Longest request (input or output tokens): far beyond any model's context window, and within int64."""


@dataclass(frozen=True)
class ServingMetrics:
    """Throughput and latency of one replica under one load; latencies in milliseconds."""

    output_throughput: float  # output tokens/s, whole replica
    request_throughput: float  # requests/s
    total_token_throughput: float  # (input + output) tokens/s
    mean_ttft_ms: float
    p50_ttft_ms: float
    p90_ttft_ms: float
    p95_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    p50_tpot_ms: float
    p90_tpot_ms: float
    p95_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float
    p50_itl_ms: float
    p90_itl_ms: float
    p95_itl_ms: float
    p99_itl_ms: float
    mean_e2e_ms: float
    p50_e2e_ms: float
    p95_e2e_ms: float
    mean_batch: float
    num_requests: int
    duration_s: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _weighted_percentiles(values: np.ndarray, weights: np.ndarray, qs: list[float]) -> list[float]:
    if len(values) == 0 or weights.sum() <= 0:
        return [0.0] * len(qs)
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    cum /= cum[-1]
    return [float(values[order][min(np.searchsorted(cum, q), len(values) - 1)]) for q in qs]


def _pcts(x: np.ndarray) -> list[float]:
    if len(x) == 0:
        return [0.0] * 5
    return [float(x.mean()), *np.percentile(x, [50, 90, 95, 99]).tolist()]


def serving_metrics(res: SimResult, dp: int = 1, frontend_latency_ms: float = 0.0) -> ServingMetrics:
    """Aggregate a simulated run into benchmark metrics (throughputs scaled by ``dp`` groups)."""
    start = float(np.min(res.arrival_s))
    duration = float(np.max(res.finish_s)) - start
    ttft = (res.first_token_s - res.arrival_s) * 1e3 + frontend_latency_ms
    e2e = (res.finish_s - res.arrival_s) * 1e3 + frontend_latency_ms
    multi = res.osl > 1
    tpot = (res.finish_s[multi] - res.first_token_s[multi]) / (res.osl[multi] - 1) * 1e3
    itl = res.itl_s * 1e3
    itl_p = _weighted_percentiles(itl, res.itl_weight, [0.5, 0.9, 0.95, 0.99])
    itl_mean = float((itl * res.itl_weight).sum() / res.itl_weight.sum()) if res.itl_weight.sum() else 0.0
    n = len(res.osl)
    scale = dp / duration if duration > 0 else 0.0
    t_m, t50, t90, t95, t99 = _pcts(ttft)
    p_m, p50, p90, p95, p99 = _pcts(tpot)
    e2e_p50, e2e_p95 = (float(v) for v in np.percentile(e2e, [50, 95]))
    return ServingMetrics(
        output_throughput=float(res.osl.sum()) * scale,
        request_throughput=n * scale,
        total_token_throughput=float(res.osl.sum() + res.isl.sum()) * scale,
        mean_ttft_ms=t_m, p50_ttft_ms=t50, p90_ttft_ms=t90, p95_ttft_ms=t95, p99_ttft_ms=t99,
        mean_tpot_ms=p_m, p50_tpot_ms=p50, p90_tpot_ms=p90, p95_tpot_ms=p95, p99_tpot_ms=p99,
        mean_itl_ms=itl_mean, p50_itl_ms=itl_p[0], p90_itl_ms=itl_p[1], p95_itl_ms=itl_p[2], p99_itl_ms=itl_p[3],
        mean_e2e_ms=float(e2e.mean()), p50_e2e_ms=e2e_p50, p95_e2e_ms=e2e_p95,
        mean_batch=res.mean_batch, num_requests=n * dp, duration_s=duration,
    )


def arrivals(n: int, rate_qps: float, process: str = "poisson", seed: int = 0) -> np.ndarray:
    """Arrival times of ``n`` requests at ``rate_qps``: Poisson (exponential gaps) or constant."""
    if rate_qps <= 0:
        raise ConfigError("rate must be > 0 requests/s")
    if process == "constant":
        return np.arange(n) / rate_qps
    if process != "poisson":
        raise ConfigError(f"unknown arrival process '{process}' (poisson or constant)")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_qps, n)
    return np.cumsum(gaps) - gaps[0]


def predict(
    replica: Replica,
    isl: int | np.ndarray,
    osl: int | np.ndarray,
    mode: Mode = "offline",
    *,
    rate_qps: float | None = None,
    concurrency: int | None = None,
    batch: int | None = None,
    num_requests: int | None = None,
    arrival: str = "poisson",
    seed: int = 0,
) -> ServingMetrics:
    """Serving metrics of a replica for fixed or sampled request lengths in one benchmark mode.

    Args:
        isl, osl: input/output tokens per request: a number, or an array of per-request lengths.
        mode: offline (all queued at t=0), rate (open-loop arrivals at ``rate_qps``),
            concurrency (``concurrency`` requests always outstanding), static (one batch of ``batch``).
        num_requests: requests to simulate (default by mode; static: the batch).
        arrival: 'poisson' or 'constant' inter-arrival times for rate mode.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode '{mode}' (one of {', '.join(MODES)})")
    dp = replica.dp
    given = [len(x) for x in (isl, osl) if np.ndim(x) > 0]
    if given and len(set(given)) > 1:
        raise ConfigError("per-request input and output lengths must have the same count")
    if mode == "static" and (not batch or batch < 1):
        raise ConfigError("static mode needs a batch size >= 1")
    if any(np.ndim(x) == 0 and x > MAX_TOKENS for x in (isl, osl)):  # (per-request arrays are int64 already)
        raise ConfigError(f"input and output lengths must be at most {MAX_TOKENS:,} tokens")
    if given:  # per-request lengths: run exactly those requests (static: in batches of `batch`)
        n = given[0]
    elif mode == "static":
        n = batch
    else:
        n = num_requests or DEFAULT_REQUESTS[mode]
        if mode == "offline":  # enough requests for several generations of a full batch
            fits = replica.memory.max_sequences(int(isl) + int(osl), replica.profile.kv_block_tokens)
            n = max(n, 3 * min(replica.max_batch, fits))
    if n > MAX_REQUESTS:
        raise ConfigError(f"{n:,} requests to simulate; at most {MAX_REQUESTS:,}")
    isl_arr = np.broadcast_to(np.asarray(isl, dtype=np.int64), (n,)) if np.ndim(isl) == 0 else np.asarray(isl)
    osl_arr = np.broadcast_to(np.asarray(osl, dtype=np.int64), (n,)) if np.ndim(osl) == 0 else np.asarray(osl)
    if np.any(isl_arr < 1) or np.any(osl_arr < 1):
        raise ConfigError("input and output lengths must be >= 1 token")
    if mode == "rate":
        if rate_qps is None:
            raise ConfigError("rate mode needs a request rate")
        t = arrivals(n, rate_qps / dp, arrival, seed)
    else:
        t = np.zeros(n)
    work = Requests(arrival_s=t, isl=isl_arr, osl=osl_arr)
    if mode == "concurrency":
        if not concurrency or concurrency < 1:
            raise ConfigError("concurrency mode needs a concurrency >= 1")
        res = simulate(replica, work, closed_loop=max(1, concurrency // dp))
    elif mode == "static":
        res = simulate(replica, work, static_batch=min(batch, replica.memory.max_sequences(int(isl_arr.max() + osl_arr.max()))) or 1)
    else:
        res = simulate(replica, work)
    # Offline and static numbers are engine-level benchmarks with no serving frontend in the path.
    frontend = replica.profile.frontend_latency_ms if mode in ("rate", "concurrency") else 0.0
    return serving_metrics(res, dp, frontend)
