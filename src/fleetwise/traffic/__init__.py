"""Traffic: request traces and rate series, their loaders, conversions, synthetic workloads and profiles.

The two shapes are :class:`RequestTrace` (arrays of arrival, input and output tokens, optional prefix ids)
and :class:`RateSeries` (requests/s on a regular grid, NaN = missing).
"""

from fleetwise.traffic.convert import (
    grid_series,
    rate_multiply,
    series_time_compress,
    series_to_trace,
    time_compress,
    trace_to_series,
)
from fleetwise.traffic.formats import FORMATS, detect
from fleetwise.traffic.lengths import EmpiricalLengths, LengthDist
from fleetwise.traffic.load import load, load_as_series, load_series, load_trace
from fleetwise.traffic.records import LoadReport, RateSeries, RequestTrace
from fleetwise.traffic.synth import DEFAULT_SPEC, SyntheticSpec, synthetic_series, synthetic_trace

__all__ = [
    "DEFAULT_SPEC", "FORMATS", "EmpiricalLengths", "LengthDist", "LoadReport", "RateSeries", "RequestTrace",
    "SyntheticSpec", "detect", "grid_series", "load", "load_as_series", "load_series", "load_trace",
    "rate_multiply", "series_time_compress", "series_to_trace", "synthetic_series", "synthetic_trace",
    "time_compress", "trace_to_series",
]
