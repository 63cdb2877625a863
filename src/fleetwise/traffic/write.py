"""Write traces and series as CSV (atomically), in formats the loaders read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from fleetwise.atomic import atomic_path
from fleetwise.traffic.records import RateSeries, RequestTrace


def _times(seconds: np.ndarray, epoch: bool) -> pa.Array:
    if epoch:
        return pa.array((seconds * 1e6).round().astype("int64"), pa.timestamp("us", tz="UTC"))
    return pa.array(seconds)


def write_trace_csv(trace: RequestTrace, path: str | Path) -> None:
    """Columns timestamp, input_tokens, output_tokens (ISO-8601 UTC when the trace has dates)."""
    table = pa.table({"timestamp": _times(trace.arrival_s, trace.epoch), "input_tokens": trace.input_tokens,
                      "output_tokens": trace.output_tokens})
    with atomic_path(path) as tmp:
        pcsv.write_csv(table, tmp)


def write_series_csv(series: RateSeries, path: str | Path) -> None:
    """Columns time, rate_rps (bin starts; empty rate = missing bin)."""
    table = pa.table({"time": _times(series.starts, series.epoch),
                      "rate_rps": pa.array(series.values, from_pandas=True)})
    with atomic_path(path) as tmp:
        pcsv.write_csv(table, tmp)
