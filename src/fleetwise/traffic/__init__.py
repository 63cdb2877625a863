"""Traffic: request traces and rate series, their loaders, conversions, synthetic workloads and profiles.

The two shapes are :class:`RequestTrace` (arrays of arrival, input and output tokens, optional prefix ids)
and :class:`RateSeries` (requests/s on a regular grid, NaN = missing).

The names below are imported from their modules on first use, so that importing one light module of the
package (``fleetwise.traffic.durations``, as every command's option checks do) does not load the file readers
(pyarrow) with it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# Exported name -> the module of this package that defines it.
_EXPORTS = {
    **dict.fromkeys(("grid_series", "rate_multiply", "series_time_compress", "series_to_trace", "time_compress",
                     "trace_to_series"), "convert"),
    **dict.fromkeys(("FORMATS", "detect"), "formats"),
    **dict.fromkeys(("EmpiricalLengths", "LengthDist"), "lengths"),
    **dict.fromkeys(("load", "load_as_series", "load_series", "load_trace"), "load"),
    **dict.fromkeys(("LoadReport", "RateSeries", "RequestTrace"), "records"),
    **dict.fromkeys(("DEFAULT_SPEC", "SyntheticSpec", "synthetic_series", "synthetic_trace"), "synth"),
}

__all__ = [
    "DEFAULT_SPEC", "FORMATS", "EmpiricalLengths", "LengthDist", "LoadReport", "RateSeries", "RequestTrace",
    "SyntheticSpec", "detect", "grid_series", "load", "load_as_series", "load_series", "load_trace",
    "rate_multiply", "series_time_compress", "series_to_trace", "synthetic_series", "synthetic_trace",
    "time_compress", "trace_to_series",
]


class _Package(types.ModuleType):
    """``load`` names both a submodule and the package's main function. Importing the submodule makes Python set
    the package's ``load`` to the module, after which ``from fleetwise.traffic import load`` would give a module
    (not callable); the function keeps the name (the submodule stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetwise.traffic' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"fleetwise.traffic.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what static tools see
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
