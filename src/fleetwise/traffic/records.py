"""The two in-memory shapes of traffic: a request trace and a rate series, both plain NumPy arrays.

Times are seconds. When ``epoch`` is true, times are Unix seconds (UTC) and weekdays are real; otherwise time 0
is taken as midnight of day 0 (ServeGen's convention), so time-of-day is meaningful and weekdays are day indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fleetwise.errors import ConfigError, InputFormatError

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0


def steps_per_day(period_s: float) -> int:
    """Bins of ``period_s`` in a day, rounded (at least one)."""
    return max(int(round(SECONDS_PER_DAY / period_s)), 1)


def steps_in_days(days: float, period_s: float) -> int:
    """Bins of ``period_s`` in ``days`` days, rounded (zero for less than half a bin)."""
    return int(round(days * SECONDS_PER_DAY / period_s))


def steps_per_hour(period_s: float) -> int:
    """Bins of ``period_s`` in an hour, rounded (at least one)."""
    return max(int(round(SECONDS_PER_HOUR / period_s)), 1)


@dataclass(frozen=True)
class LoadReport:
    """What a loader had to repair or skip, so the CLI can warn and tests can check."""

    rows: int = 0
    bad_rows: int = 0
    first_bad: tuple[str, ...] = ()  # "line 12: field 'ContextTokens': '-3' is not a non-negative integer"
    sorted_rows: bool = False  # timestamps were out of order and have been sorted
    gap_bins: int = 0  # rate-series bins treated as missing (collection gaps)
    gaps: tuple[tuple[float, float], ...] = ()  # (start_s, end_s) of each detected gap
    partial_bins: tuple[float, ...] = ()  # start_s of each partly observed bin treated as missing (traffic.gaps)
    file: str | None = None  # the file loaded, for error messages about its data (None: made in memory)

    def warnings(self) -> list[str]:
        out = []
        if self.bad_rows:
            out.append(f"skipped {self.bad_rows:,} bad row(s) of {self.rows:,}; first: {'; '.join(self.first_bad)}")
        if self.sorted_rows:
            out.append("timestamps were not in order; sorted them")
        if self.gap_bins:
            spans = ", ".join(f"{a:,.0f}-{b:,.0f} s" for a, b in self.gaps[:3])
            more = f" (+{len(self.gaps) - 3} more)" if len(self.gaps) > 3 else ""
            out.append(f"{self.gap_bins} bin(s) in {len(self.gaps)} collection gap(s) treated as missing: {spans}{more}")
        if self.partial_bins:
            starts = ", ".join(f"{a:,.0f} s" for a in self.partial_bins[:3])
            more = f" (+{len(self.partial_bins) - 3} more)" if len(self.partial_bins) > 3 else ""
            out.append(f"{len(self.partial_bins)} partly observed bin(s) beside gaps or at the ends treated as "
                       f"missing (far below the traffic beside them), starting at {starts}{more}")
        return out


@dataclass(frozen=True, eq=False)
class RequestTrace:
    """Requests as parallel arrays sorted by arrival; optional prefix-block ids in CSR form."""

    arrival_s: np.ndarray  # float64, sorted, seconds
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    epoch: bool = False
    prefix_offsets: np.ndarray | None = None  # int64, len n+1: ids of request i are prefix_ids[off[i]:off[i+1]]
    prefix_ids: np.ndarray | None = None
    source: str = ""
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise ConfigError("trace arrays must have equal lengths")
        if n > 1 and np.any(np.diff(self.arrival_s) < 0):
            raise ConfigError("trace arrivals must be sorted")
        if (self.prefix_offsets is None) != (self.prefix_ids is None):
            raise ConfigError("prefix ids need both offsets and ids")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def start_s(self) -> float:
        return float(self.arrival_s[0]) if len(self) else 0.0

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0

    @property
    def mean_rate_rps(self) -> float:
        return (len(self) - 1) / self.duration_s if self.duration_s > 0 else float("nan")

    def with_span(self) -> RequestTrace:
        """The trace itself when it has a rate (two requests or more, over a time span), else an error naming
        its file: every command that reads a trace as traffic (summarize, convert, simulate, forecast, optimize) asks
        this."""
        if len(self) < 2:
            raise InputFormatError(f"a trace needs at least two requests to have a rate (it has {len(self)})",
                                   file=self.report.file)
        if self.duration_s <= 0:
            raise InputFormatError(f"all {len(self):,} requests arrive at the same time ({self.start_s:g} s): a "
                                   "trace needs a time span to have a rate", file=self.report.file)
        return self

    def prefix(self, i: int) -> np.ndarray:
        if self.prefix_offsets is None or self.prefix_ids is None:
            return np.empty(0, dtype=np.int64)
        return self.prefix_ids[self.prefix_offsets[i] : self.prefix_offsets[i + 1]]

    def take(self, index: np.ndarray, arrival_s: np.ndarray | None = None) -> RequestTrace:
        """The rows ``index`` (indices or a boolean mask), optionally with new (sorted) arrival times."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64, copy=False)
        offsets, ids = None, None
        if self.prefix_offsets is not None and self.prefix_ids is not None:
            offsets, ids = take_csr(self.prefix_offsets, self.prefix_ids, index)
        return replace(
            self, arrival_s=self.arrival_s[index] if arrival_s is None else arrival_s, input_tokens=self.input_tokens[index],
            output_tokens=self.output_tokens[index], prefix_offsets=offsets, prefix_ids=ids,
        )

    def window(self, start_s: float, end_s: float) -> RequestTrace:
        """Requests arriving in [start_s, end_s)."""
        lo, hi = np.searchsorted(self.arrival_s, [start_s, end_s])
        return self.take(np.arange(lo, hi))


@dataclass(frozen=True, eq=False)
class RateSeries:
    """Request rate on a regular grid: bin i covers [start_s + i*period_s, start_s + (i+1)*period_s).

    ``values`` are requests per second averaged over the bin; NaN marks a missing bin (no data or a
    detected collection gap), which forecasters skip rather than read as zero demand.
    """

    start_s: float
    period_s: float
    values: np.ndarray  # float64 req/s, NaN = missing
    epoch: bool = False
    source: str = ""
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ConfigError(f"series period must be positive (got {self.period_s})")
        if np.any(self.values[np.isfinite(self.values)] < 0):
            raise ConfigError("rates must be non-negative")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def starts(self) -> np.ndarray:
        return self.start_s + self.period_s * np.arange(len(self.values))

    @property
    def end_s(self) -> float:
        return self.start_s + self.period_s * len(self.values)

    @property
    def counts(self) -> np.ndarray:
        """Expected requests per bin."""
        return self.values * self.period_s

    @property
    def steps_per_day(self) -> int:
        return steps_per_day(self.period_s)

    def with_values(self, values: np.ndarray, **changes) -> RateSeries:
        return replace(self, values=np.asarray(values, dtype=np.float64), **changes)

    def slice(self, lo: int, hi: int | None = None) -> RateSeries:
        """Bins lo..hi-1 as a new series."""
        hi = len(self) if hi is None else hi
        return replace(self, start_s=self.start_s + lo * self.period_s, values=self.values[lo:hi])

    def resample(self, period_s: float) -> RateSeries:
        """Aggregate to a coarser grid that is a whole multiple of this one (a bin is missing if any part is)."""
        k = period_s / self.period_s
        if k < 1 or abs(k - round(k)) > 1e-9:
            raise ConfigError(
                f"can only aggregate {self.period_s:g} s bins to a whole multiple (asked for {period_s:g} s)"
            )
        k = int(round(k))
        if k == 1:
            return self
        n = len(self.values) // k
        vals = self.values[: n * k].reshape(n, k).mean(axis=1)  # NaN propagates: a partly missing bin is missing
        return replace(self, period_s=period_s, values=vals)


def take_csr(offsets: np.ndarray, ids: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``index`` of a ragged (CSR) array, as new (offsets, ids)."""
    lens = np.diff(offsets)[index]
    new_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    starts = offsets[:-1][index]
    return new_offsets, ids[np.repeat(starts - new_offsets[:-1], lens) + np.arange(new_offsets[-1])]


def time_of_day_s(times_s: np.ndarray) -> np.ndarray:
    return np.mod(times_s, SECONDS_PER_DAY)


def weekday(times_s: np.ndarray, epoch: bool) -> np.ndarray:
    """0 = Monday for epoch times (1970-01-01 was a Thursday); day index mod 7 otherwise."""
    days = np.floor_divide(times_s, SECONDS_PER_DAY).astype(np.int64)
    return np.mod(days + 3, 7) if epoch else np.mod(days, 7)
