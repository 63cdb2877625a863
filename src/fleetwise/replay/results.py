"""What a replay measured: per-request arrays, the summary ``fleetwise replay --json`` prints, and the CSV.

Times are in the trace's time: a run with ``time_compress`` X sends X times faster than the trace and
reports every latency multiplied by X, so a replay against an emulator started with ``--time-scale X`` reads
as real time. Only the client's own lag (``client_lag_s``, ``wall_s``) is wall-clock time.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetwise.atomic import write_atomic

OK = "ok"
CANCELLED = "cancelled"  # in flight when the run was stopped: neither completed nor failed
NOT_SENT = "not_sent"  # the run was stopped before its arrival time
NOT_FAILED = (OK, CANCELLED, NOT_SENT)
LATE_SEND_S = 0.010
"""A request sent more than this long (wall clock) after its scheduled time is a late send."""
LATE_WARN_SHARE = 0.01
"""Warn when more than this share of the sent requests were sent late."""
DEFAULT_TTFT_MS = 1000.0
DEFAULT_TPOT_MS = 50.0
"""SLO targets of ``slo_attainment`` when none are given: the same defaults as ``fleetwise simulate``."""
CSV_COLUMNS = ("id", "arrival_s", "sent_s", "input_tokens", "output_tokens", "ttft_ms", "tpot_ms", "e2e_ms",
               "status")


def pcts(x: np.ndarray, qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """{'p50': ..., 'p95': ..., 'p99': ...} of the finite values (NaN when there are none)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {f"p{q}": math.nan for q in qs}
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(x, qs), strict=True)}


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """One replay: parallel arrays with one entry per request of the replayed trace, in arrival order.

    Latencies are NaN where they were not measured (a request that failed before its first token has no TTFT;
    one never sent has no ``sent_s``). ``status`` is ``ok``, a failure reason (``http_<status>``, ``timeout``,
    ``connection_lost``, ``incomplete``, ``stream_error``, ``protocol_error``, ``client_error``),
    ``cancelled`` or ``not_sent``.
    """

    urls: tuple[str, ...]
    model: str
    api: str
    stream: bool
    time_compress: float
    arrival_s: np.ndarray  # since the first replayed arrival (trace time)
    sent_s: np.ndarray  # since the run started (trace time); NaN: never sent
    input_tokens: np.ndarray
    max_tokens: np.ndarray  # the trace's output length, asked for with max_tokens = min_tokens
    output_tokens: np.ndarray  # received: the server's usage count if it sent one, else content events
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    status: tuple[str, ...]
    url_index: np.ndarray  # which of ``urls`` the request went to; -1: never sent
    itl_s: np.ndarray = field(repr=False)  # gaps between content events, all requests (thinned past a cap)
    wall_s: float = 0.0  # wall-clock seconds from the first send to the last answer
    interrupted: bool = False
    in_flight_waits: int = 0  # requests that waited for a free slot under max_in_flight (and so were late)
    first_errors: dict[str, str] = field(default_factory=dict)  # the first message seen per failure reason
    rerouted: int = 0  # tries sent again to another backend after one refused them (following backends)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def client_lag_s(self) -> np.ndarray:
        """Wall-clock seconds each request was sent after its scheduled time (NaN: never sent)."""
        return (self.sent_s - self.arrival_s) / self.time_compress

    @property
    def status_array(self) -> np.ndarray:
        return np.asarray(self.status, dtype=object)

    def slo_met(self, ttft_ms: float = DEFAULT_TTFT_MS, tpot_ms: float = DEFAULT_TPOT_MS) -> np.ndarray:
        """Completed with TTFT <= ``ttft_ms`` and TPOT <= ``tpot_ms`` (no TPOT: a one-token answer, or no
        stream to time it on, passes on TTFT alone)."""
        ok = self.status_array == OK
        ttft_ok = self.ttft_s * 1e3 <= ttft_ms
        tpot_ok = ~np.isfinite(self.tpot_s) | (self.tpot_s * 1e3 <= tpot_ms)
        return ok & ttft_ok & tpot_ok

    def summary(self, ttft_ms: float = DEFAULT_TTFT_MS, tpot_ms: float = DEFAULT_TPOT_MS) -> dict:
        """The run in one dict (the keys of ``fleetwise simulate --json`` where they mean the same thing).

        ``slo_attainment`` is the share of requests with an outcome (completed or failed; not cancelled or
        never sent) that completed within both targets; rates and ``duration_s`` are in trace time.
        """
        status = self.status_array
        counts = Counter(self.status)
        ok = status == OK
        failed = {r: n for r, n in sorted(counts.items()) if r not in NOT_FAILED}
        sent = np.isfinite(self.sent_s)
        decided = int(sent.sum()) - counts.get(CANCELLED, 0)
        met = int(self.slo_met(ttft_ms, tpot_ms).sum())
        lag = self.client_lag_s[sent]
        late = int((lag > LATE_SEND_S).sum())
        duration = self.wall_s * self.time_compress
        return {
            "requests": len(self), "sent": int(sent.sum()), "completed": int(ok.sum()),
            "failed": sum(failed.values()), "failed_by_reason": failed,
            "first_error_by_reason": {r: self.first_errors[r] for r in failed if r in self.first_errors},
            "cancelled": counts.get(CANCELLED, 0), "not_sent": counts.get(NOT_SENT, 0),
            "rerouted": self.rerouted, "interrupted": self.interrupted,
            "ttft_ms": pcts(self.ttft_s[ok] * 1e3), "tpot_ms": pcts(self.tpot_s[ok] * 1e3),
            "e2e_ms": pcts(self.e2e_s[ok] * 1e3), "itl_ms": pcts(self.itl_s * 1e3),
            "slo": {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms},
            "slo_attainment": met / decided if decided > 0 else math.nan,
            "goodput_rps": met / duration if duration > 0 else math.nan,
            "duration_s": duration, "wall_s": self.wall_s,
            "achieved_rps": _rate(self.sent_s[sent]), "trace_rps": _rate(self.arrival_s),
            "throughput_rps": int(ok.sum()) / duration if duration > 0 else math.nan,
            "output_tokens": int(self.output_tokens[ok].sum()),
            "output_tokens_per_s": int(self.output_tokens[ok].sum()) / duration if duration > 0 else math.nan,
            "short_outputs": int((ok & (self.output_tokens < self.max_tokens)).sum()),
            "late_sends": late, "late_share": late / len(lag) if len(lag) else 0.0,
            "late_warning": bool(len(lag)) and late / len(lag) > LATE_WARN_SHARE,
            "in_flight_waits": self.in_flight_waits,
            "client_lag_ms": pcts(lag * 1e3, (50, 99)),
            "time_compress": self.time_compress, "urls": list(self.urls), "model": self.model,
            "api": self.api, "stream": self.stream, "by_url": self._by_url(status),
        }

    def _by_url(self, status: np.ndarray) -> list[dict]:
        out = []
        for k, url in enumerate(self.urls):
            mine = self.url_index == k
            done = mine & (status == OK)
            out.append({"url": url, "sent": int(mine.sum()), "completed": int(done.sum()),
                        "failed": int((mine & ~np.isin(status, NOT_FAILED)).sum()),
                        "tokens": int((self.input_tokens[mine] + self.max_tokens[mine]).sum()),
                        "ttft_ms": pcts(self.ttft_s[done] * 1e3)})
        return out

    def rate_over_time(self, bin_s: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bin starts, trace arrivals per s, requests sent per s) in trace time; ~60 bins by default."""
        last_arrival = float(self.arrival_s[-1]) if len(self) else 0.0
        span = max(float(np.nanmax(self.sent_s, initial=0.0)), last_arrival)
        bin_s = bin_s or _nice_bin(span / 60 if span > 0 else 1.0)
        edges = np.arange(0.0, span + bin_s, bin_s)
        if len(edges) < 2:
            edges = np.array([0.0, bin_s])
        sent = self.sent_s[np.isfinite(self.sent_s)]
        trace_rps = np.histogram(self.arrival_s, edges)[0] / bin_s
        return edges[:-1], trace_rps, np.histogram(sent, edges)[0] / bin_s

    def csv_text(self) -> str:
        """One CSV row per request with the columns of ``CSV_COLUMNS``."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        cols = (_fmt(self.arrival_s, 6), _fmt(self.sent_s, 6), self.input_tokens.tolist(),
                self.output_tokens.tolist(), _fmt(self.ttft_s * 1e3, 3), _fmt(self.tpot_s * 1e3, 3),
                _fmt(self.e2e_s * 1e3, 3), self.status)
        w.writerows(zip(range(len(self)), *cols, strict=True))
        return buf.getvalue()

    def write_csv(self, path: str | Path) -> None:
        """Write :meth:`csv_text` to ``path`` atomically (empty cells where nothing was measured)."""
        write_atomic(path, self.csv_text())


def _fmt(x: np.ndarray, digits: int) -> list[str]:
    return ["" if math.isnan(v) else f"{v:.{digits}f}" for v in x.tolist()]


def _rate(times_s: np.ndarray) -> float:
    """Events per second between the first and the last (NaN for fewer than two or no span)."""
    if len(times_s) < 2:
        return math.nan
    span = float(np.max(times_s) - np.min(times_s))
    return (len(times_s) - 1) / span if span > 0 else math.nan


def _nice_bin(seconds: float) -> float:
    """The smallest of 0.1, 0.2, 0.5, 1, 2, 5, 10, ... s (and 1, 5, 15 min, 1 h, ...) at least ``seconds``."""
    for b in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400):
        if b >= seconds:
            return float(b)
    return 86400.0 * math.ceil(seconds / 86400.0)
