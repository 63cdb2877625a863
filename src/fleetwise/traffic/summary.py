"""A capacity planner's summary of traffic: rates per bin, burstiness, token lengths, and the weekday x
time-of-day demand profile (P50/P75/P95 of rate and tokens/s per weekday and 5-minute bin)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.traffic.convert import bin_count, trace_to_series
from fleetwise.traffic.records import RateSeries, RequestTrace, steps_per_day, time_of_day_s, weekday

PERCENTILES = (50, 90, 95, 99)
PROFILE_PERCENTILES = (50, 75, 95)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Profile:
    """Demand profile: rows are (weekday, bin); columns P50/P75/P95 of the rate (and tokens/s for traces)."""

    bin_s: float
    epoch: bool
    weekday: np.ndarray  # (rows,)
    bin_start_s: np.ndarray  # time of day, seconds
    samples: np.ndarray  # observations per cell
    rate_rps: np.ndarray  # (rows, 3)
    tokens_per_s: np.ndarray | None  # (rows, 3) input+output tokens/s, traces only

    def weekday_label(self, d: int) -> str:
        return WEEKDAYS[d] if self.epoch else f"day{d}"

    def records(self) -> list[dict]:
        out = []
        for k in range(len(self.weekday)):
            rec = {"weekday": self.weekday_label(int(self.weekday[k])),
                   "time_of_day": hhmm(float(self.bin_start_s[k])), "samples": int(self.samples[k])}
            for j, p in enumerate(PROFILE_PERCENTILES):
                rec[f"rate_p{p}"] = float(self.rate_rps[k, j])
                if self.tokens_per_s is not None:
                    rec[f"tokens_per_s_p{p}"] = float(self.tokens_per_s[k, j])
            out.append(rec)
        return out


@dataclass(frozen=True)
class Summary:
    source: str
    kind: str  # "trace" or "series"
    start_s: float
    duration_s: float
    requests: int  # a series' expected count, rounded
    mean_rate_rps: float
    rate_bin_s: float
    rate: dict[str, float]  # mean, p50, p95, max of the per-bin rate
    peak_to_mean: float
    interarrival_cv: float | None
    input_tokens: dict[str, float] | None
    output_tokens: dict[str, float] | None
    tokens_per_s_mean: float | None
    missing_bins: int
    warnings: list[str] = field(default_factory=list)
    profile: Profile | None = None
    series: RateSeries | None = None  # the per-bin rate behind the figures (for plots)
    lengths: dict[str, np.ndarray] | None = None  # a sample of input/output lengths (for plots)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("source", "kind", "start_s", "duration_s", "requests",
                                              "mean_rate_rps", "rate_bin_s", "rate", "peak_to_mean",
                                              "interarrival_cv", "input_tokens", "output_tokens",
                                              "tokens_per_s_mean", "missing_bins", "warnings")}
        if self.profile is not None:
            out["profile"] = {"bin_s": self.profile.bin_s, "rows": self.profile.records()}
        return out


def hhmm(seconds: float) -> str:
    """Time of day as HH:MM from seconds since midnight."""
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def _dist(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    return {"mean": float(x.mean()), **{f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES),
                                                                           strict=True)}, "max": float(x.max())}


def _rate_stats(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        raise ConfigError("no known values to summarize")
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max())}


def summarize(obj: RequestTrace | RateSeries, *, bin_s: float | None = None, profile_bin_s: float = 300.0
              ) -> Summary:
    """Summarize a trace (rates binned at ``bin_s``, default 60 s) or a series (its own bins)."""
    if isinstance(obj, RequestTrace):
        return _summarize_trace(obj, bin_s or 60.0, profile_bin_s)
    series = obj.resample(bin_s) if bin_s else obj  # resample returns the series itself at its own period
    rate = _rate_stats(series.values)
    known = np.isfinite(series.values)
    return Summary(
        source=obj.source, kind="series", start_s=series.start_s, duration_s=series.period_s * len(series),
        requests=int(round(float(np.nansum(series.counts)))), mean_rate_rps=rate["mean"], rate_bin_s=series.period_s,
        rate=rate, peak_to_mean=rate["max"] / rate["mean"] if rate["mean"] > 0 else float("nan"),
        interarrival_cv=None, input_tokens=None, output_tokens=None, tokens_per_s_mean=None,
        missing_bins=int((~known).sum()), warnings=obj.report.warnings(),
        profile=series_profile(series, max(profile_bin_s, series.period_s)), series=series,
    )


def _summarize_trace(trace: RequestTrace, bin_s: float, profile_bin_s: float) -> Summary:
    series = trace_to_series(trace.with_span(), bin_s)
    rate = _rate_stats(series.values)
    gaps = np.diff(trace.arrival_s)
    tokens = trace.input_tokens + trace.output_tokens
    # The lengths kept for the histograms: every k-th request, k chosen so a long trace keeps 200,000 to
    # 400,000 of them (a shorter one keeps all), which bounds the summary's memory and the plot's binning
    # time.
    every = max(len(trace) // 200_000, 1)
    return Summary(
        source=trace.source, kind="trace", start_s=trace.start_s, duration_s=trace.duration_s,
        requests=len(trace), mean_rate_rps=trace.mean_rate_rps, rate_bin_s=bin_s, rate=rate,
        peak_to_mean=rate["max"] / rate["mean"] if rate["mean"] > 0 else float("nan"),
        interarrival_cv=float(gaps.std() / gaps.mean()) if gaps.mean() > 0 else float("nan"),
        input_tokens=_dist(trace.input_tokens), output_tokens=_dist(trace.output_tokens),
        tokens_per_s_mean=float(tokens.sum() / trace.duration_s) if trace.duration_s > 0 else float("nan"),
        missing_bins=int((~np.isfinite(series.values)).sum()), warnings=trace.report.warnings(),
        profile=trace_profile(trace, profile_bin_s), series=series,
        lengths={"input": trace.input_tokens[::every], "output": trace.output_tokens[::every]},
    )


def _cells(times_s: np.ndarray, epoch: bool, bin_s: float) -> tuple[np.ndarray, int]:
    per_day = steps_per_day(bin_s)
    cell = weekday(times_s, epoch) * per_day + (time_of_day_s(times_s) // bin_s).astype(np.int64)
    return cell, per_day


def _profile(cell: np.ndarray, per_day: int, bin_s: float, epoch: bool, rate: np.ndarray,
             tokens: np.ndarray | None) -> Profile:
    order = np.argsort(cell, kind="stable")
    cell, rate = cell[order], rate[order]
    tokens = tokens[order] if tokens is not None else None
    uniq, starts, counts = np.unique(cell, return_index=True, return_counts=True)
    pr = np.array([np.percentile(rate[s:s + c], PROFILE_PERCENTILES) for s, c in zip(starts, counts, strict=True)])
    pt = (np.array([np.percentile(tokens[s:s + c], PROFILE_PERCENTILES) for s, c in zip(starts, counts, strict=True)])
          if tokens is not None else None)
    return Profile(bin_s, epoch, uniq // per_day, (uniq % per_day) * bin_s, counts, pr, pt)


def series_profile(series: RateSeries, bin_s: float = 300.0) -> Profile:
    """P50/P75/P95 per (weekday, time bin) over the series' known values (one sample per bin per week)."""
    known = np.isfinite(series.values)
    mid = series.starts + series.period_s / 2
    cell, per_day = _cells(mid[known], series.epoch, bin_s)
    return _profile(cell, per_day, bin_s, series.epoch, series.values[known], None)


def trace_profile(trace: RequestTrace, bin_s: float = 300.0, sample_s: float = 60.0) -> Profile:
    """P50/P75/P95 per (weekday, ``bin_s`` bin) of the per-minute rate and token throughput."""
    sample_s = min(sample_s, bin_s)
    t0 = np.floor(trace.start_s / sample_s) * sample_s
    bin_count(t0, float(trace.arrival_s[-1]), sample_s, trace.report.file)
    idx = ((trace.arrival_s - t0) // sample_s).astype(np.int64)
    n = int(idx[-1]) + 1
    rate = np.bincount(idx, minlength=n) / sample_s
    tokens = np.bincount(idx, weights=trace.input_tokens + trace.output_tokens, minlength=n) / sample_s
    mid = t0 + sample_s * (np.arange(n) + 0.5)
    whole = slice(1, n - 1) if n > 2 else slice(0, n)  # the first and last minute are only partly covered
    cell, per_day = _cells(mid[whole], trace.epoch, bin_s)
    return _profile(cell, per_day, bin_s, trace.epoch, rate[whole], tokens[whole])
