"""Vectorized parsing of raw columns (Arrow arrays, usually strings) into numbers, flagging bad cells.

Every parser returns ``(values, bad)``: a float64/int64 NumPy array and a boolean mask of cells that could not be
parsed. Nulls count as bad; the caller decides what a bad row costs. So are numbers outside what the quantity can
be: a token count above :data:`MAX_COUNT` (it would wrap around in int64, or stall a simulation) and a time more
than :data:`MAX_TIME_S` from 0 (Unix seconds of the year 5138: a time in ms or ns read as seconds, or a corrupt
cell); a cell that is a JSON object or list (nested JSONL) is bad like any other unparsable cell.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_INT = r"^\s*\+?\d+(\.0*)?\s*$"
_FLOAT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_NAN = r"^\s*(?i:nan|null|none|)\s*$"
_DATE = r"^\s*\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d(\.\d+)?)?)?"
_NAIVE = _DATE + r"\s*$"
_ZONED = _DATE + r"(Z|[+-]\d\d:?\d\d)\s*$"

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MAX_COUNT = 1_000_000_000  # tokens in one request: 100x the longest context window of any model
MAX_TIME_S = 1e11  # seconds from 0 (Unix time of the year 5138)


def bad_times(seconds: np.ndarray) -> np.ndarray:
    """Times that are not finite or are more than :data:`MAX_TIME_S` from 0 (for every reader of times)."""
    return ~(np.abs(seconds) <= MAX_TIME_S)


def _null_unless(arr: pa.Array, ok: pa.Array) -> pa.Array:
    return pc.if_else(ok, arr, pa.nulls(1, arr.type)[0])


def _matches(s: pa.Array, pattern: str, null: bool = False) -> pa.Array:
    """Which cells match ``pattern`` (a null cell counts as ``null``), with Kleene logic rather than
    ``fill_null``: ``fill_null(x, False)`` builds a ``pa.scalar``, and that imports pandas (0.4 s)."""
    m = pc.match_substring_regex(s, pattern)
    return pc.or_kleene(m, pc.is_null(m)) if null else pc.and_not_kleene(m, pc.is_null(m))


def _cast_all(s: pa.Array, to: pa.DataType) -> pa.Array | None:
    """The whole column cast at once (Arrow's own number/ISO-8601 parsers), or None if any cell fails: the
    regular case costs one vectorized pass, and only a column with a bad cell goes cell by cell."""
    try:
        return pc.cast(s, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _to_numpy(arr: pa.Array, dtype) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _strings(arr: pa.Array) -> pa.Array:
    """The cells as trimmed strings (' 12' converts like '12'); a nested cell (a JSON object or list) becomes its
    JSON text, which no parser accepts."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        s = arr
    else:
        try:
            s = pc.cast(arr, pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            s = pa.array([None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())
    return pc.utf8_trim_whitespace(s)


def parse_count(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Integers from 0 to :data:`MAX_COUNT` (token counts); '12.0' is accepted, '-3', '1.5', 'x' and 1e20 are
    bad."""
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        vals = _to_numpy(pc.cast(arr, pa.float64()), np.float64)
        bad = ~np.isfinite(vals) | (vals < 0) | (vals != np.floor(vals))
    elif (ints := _cast_all(arr, pa.int64())) is not None:  # the usual column: plain integers, maybe nulls
        if ints.null_count == 0:  # no float round trip: the int64 buffer itself
            vals = ints.to_numpy()
            bad = (vals < 0) | (vals > MAX_COUNT)
            return (np.where(bad, 0, vals) if bad.any() else vals), bad
        vals = _to_numpy(pc.cast(ints, pa.float64()), np.float64)
        bad = ~np.isfinite(vals) | (vals < 0)
    else:
        s = _strings(arr)
        ok = _matches(s, _INT)
        vals = _to_numpy(pc.cast(_null_unless(s, ok), pa.float64()), np.float64)
        bad = ~_to_numpy(ok, bool)
    bad |= ~(vals <= MAX_COUNT)
    return np.where(bad, 0, vals).astype(np.int64), bad


def parse_float(arr: pa.Array, *, allow_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Finite floats; with ``allow_missing`` an empty/NaN/null cell becomes NaN instead of bad."""
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        vals = _to_numpy(pc.cast(arr, pa.float64()), np.float64)
        missing = np.isnan(vals)
    elif (floats := _cast_all(arr, pa.float64())) is not None:  # plain numbers ('nan' and nulls are missing)
        vals = _to_numpy(floats, np.float64)
        missing = np.isnan(vals)
    else:
        s = _strings(arr)
        ok = _matches(s, _FLOAT)
        vals = _to_numpy(pc.cast(_null_unless(s, ok), pa.float64()), np.float64)
        missing = _to_numpy(_matches(s, _NAN, null=True), bool) & ~_to_numpy(ok, bool)
        vals = np.where(missing, np.nan, vals)
    bad = ~np.isfinite(vals) & ~(missing & allow_missing)
    return vals, bad


def parse_time(arr: pa.Array, unit_s: float = 1.0) -> tuple[np.ndarray, np.ndarray, bool]:
    """Seconds from numbers (times ``unit_s``) or ISO-8601 date-times (Unix seconds; naive means UTC).

    Returns (seconds, bad, is_epoch): is_epoch is true when the column held date-times. A time more than
    :data:`MAX_TIME_S` from 0 is bad.
    """
    if pa.types.is_timestamp(arr.type):
        ns = _to_numpy(pc.cast(pc.cast(arr, pa.timestamp("ns", tz=arr.type.tz)), pa.int64()), np.float64)
        return ns * 1e-9, np.isnan(ns), True
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        vals, bad = parse_float(arr)
        vals = vals * unit_s
        return vals, bad | bad_times(vals), False
    if pa.types.is_string(arr.type) and (ts := _cast_all(arr, pa.timestamp("ns"))) is not None:
        ns = _to_numpy(pc.cast(ts, pa.int64()), np.float64)  # every cell a naive ISO-8601 time (or null)
        secs = ns * 1e-9
        return secs, ~np.isfinite(secs) | bad_times(secs), True
    s = _strings(arr)
    naive = _matches(s, _NAIVE)
    zoned = _matches(s, _ZONED)
    n_dates = pc.sum(pc.or_(naive, zoned)).as_py() or 0
    if n_dates == 0:
        vals, bad = parse_float(s)
        vals = vals * unit_s
        return vals, bad | bad_times(vals), False
    secs = np.full(len(s), np.nan)
    for mask, tz in ((naive, None), (zoned, "UTC")):
        if not pc.any(mask).as_py():
            continue
        try:
            ts = pc.cast(_null_unless(s, mask), pa.timestamp("ns", tz=tz))
        except pa.ArrowInvalid:  # matched the pattern but is not a date (month 13); parse cell by cell
            ts = pa.array([_one_time(v, tz) for v in _null_unless(s, mask).to_pylist()], pa.timestamp("ns"))
        ns = _to_numpy(pc.cast(ts, pa.int64()), np.float64)
        secs = np.where(_to_numpy(mask, bool), ns * 1e-9, secs)
    return secs, ~np.isfinite(secs), True


def _one_time(value: str | None, tz: str | None):
    if value is None:
        return None
    try:
        return pc.cast(pa.array([value]), pa.timestamp("ns", tz=tz))[0].as_py()
    except pa.ArrowInvalid:
        return None
