"""Load request traces and rate series from files, with bad-row accounting and gap detection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic import formats
from fleetwise.traffic.columns import MAX_TIME_S, bad_times, parse_count, parse_float, parse_time
from fleetwise.traffic.convert import grid_series, trace_to_series
from fleetwise.traffic.gaps import DEFAULT_MIN_EXPECTED, mask_partial
from fleetwise.traffic.records import LoadReport, RateSeries, RequestTrace, take_csr
from fleetwise.traffic.tabular import BadRows, csv_batches, file_kind, jsonl_batches, parquet_batches

DEFAULT_MAX_BAD_ROWS = 0.01  # below 1: a fraction of the rows; 1 or more: a count


def _batches(path: Path, columns: list[str], bad: BadRows, names: list[str] | None = None
             ) -> Iterator[tuple[int, dict[str, pa.Array]]]:
    kind = file_kind(path)
    if kind == "parquet":
        return parquet_batches(path, columns)
    if kind == "jsonl":
        return jsonl_batches(path, columns, bad)
    return csv_batches(path, columns, bad, names=names)


def _check_bad(bad: BadRows, rows: int, max_bad_rows: float) -> LoadReport:
    if not max_bad_rows >= 0:
        raise ConfigError(f"the bad-row allowance must be >= 0 (got {max_bad_rows:g})")
    total = rows + len(bad.rejected_lines)
    limit = max_bad_rows * total if max_bad_rows < 1 else max_bad_rows
    first = bad.describe() if bad.count else ()
    if bad.count > limit:
        raise InputFormatError(
            f"{bad.count:,} bad row(s) of {total:,} exceed --max-bad-rows {max_bad_rows:g}; first: "
            + "; ".join(first), file=str(bad.path),
        )
    if total == bad.count:
        raise InputFormatError("no usable rows", file=str(bad.path))
    return LoadReport(rows=total, bad_rows=bad.count, first_bad=first, file=str(bad.path))


def load_trace(
    path: str | Path, *, fmt: str = "auto", time_col: str | None = None, input_col: str | None = None,
    output_col: str | None = None, time_unit_s: float | None = None, max_bad_rows: float = DEFAULT_MAX_BAD_ROWS,
) -> RequestTrace:
    """Read a request trace (Azure, BurstGPT, Mooncake or a generic CSV / Parquet / JSONL table).

    Bad rows (unparsable or out-of-range time, negative, non-integer or absurdly large token counts: see
    :mod:`fleetwise.traffic.columns`) are skipped and counted; more than
    ``max_bad_rows`` (a fraction below 1, a count otherwise) fails the load naming the first few lines.
    Out-of-order rows are sorted.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = formats.detect(path, prefer="trace" if input_col or output_col else None)
    if fmt not in formats.TRACE_FORMATS:
        raise InputFormatError(f"this is a rate series ({fmt}), not a request trace", file=str(path))
    cols = formats.trace_columns(path, fmt, time_col, input_col, output_col, time_unit_s)
    wanted = [cols.time, cols.input, cols.output] + ([cols.prefix] if cols.prefix else [])
    bad = BadRows(path, file_kind(path))
    parts: dict[str, list[np.ndarray]] = {"t": [], "i": [], "o": [], "plen": [], "pids": []}
    epoch_flags, rows = set(), 0
    for offset, batch in _batches(path, wanted, bad):
        t, bad_t, is_epoch = parse_time(batch[cols.time], cols.time_unit_s)
        i, bad_i = parse_count(batch[cols.input])
        o, bad_o = parse_count(batch[cols.output])
        for mask, name in ((bad_t, cols.time), (bad_i, cols.input), (bad_o, cols.output)):
            bad.add(mask, offset, name, batch[name])
        keep = ~(bad_t | bad_i | bad_o)
        bad.count += int((~keep).sum())
        rows += len(keep)
        epoch_flags.add(is_epoch)
        every = bool(keep.all())  # the usual block: no copies
        parts["t"].append(t if every else t[keep])
        parts["i"].append(i if every else i[keep])
        parts["o"].append(o if every else o[keep])
        if cols.prefix:
            lists = batch[cols.prefix]
            _check_prefix_type(lists, path, cols.prefix)
            lens = _list_lengths(lists)
            parts["plen"].append(lens[keep])
            parts["pids"].append(_flat_ids(lists, keep))
    if len(epoch_flags) > 1:
        raise InputFormatError(f"column '{cols.time}' mixes date-times and plain numbers", file=str(path))
    report = _check_bad(bad, rows, max_bad_rows)
    arrays = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in parts.items()}
    return _sorted_trace(arrays, epoch=epoch_flags == {True}, source=f"{fmt}:{path}", report=report)


def _check_prefix_type(lists: pa.Array, path: Path, name: str) -> None:
    is_list = pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type)
    if is_list and not (pa.types.is_integer(lists.type.value_type) or pa.types.is_null(lists.type.value_type)):
        raise InputFormatError(f"prefix block ids must be lists of integers (got {lists.type})", file=str(path),
                               field=name)


def _list_lengths(lists: pa.Array) -> np.ndarray:
    if not (pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type)):
        return np.zeros(len(lists), dtype=np.int64)
    return np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _flat_ids(lists: pa.Array, keep: np.ndarray) -> np.ndarray:
    if not (pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type)):
        return np.empty(0, dtype=np.int64)
    kept = lists.filter(pa.array(keep))
    return np.asarray(pc.list_flatten(kept).to_numpy(zero_copy_only=False), dtype=np.int64)


def _sorted_trace(a: dict[str, np.ndarray], *, epoch: bool, source: str, report: LoadReport) -> RequestTrace:
    t, i, o = (np.asarray(a["t"], np.float64), np.asarray(a["i"], np.int64), np.asarray(a["o"], np.int64))
    offsets = ids = None
    if a["plen"].size:
        offsets = np.concatenate([[0], np.cumsum(a["plen"])]).astype(np.int64)
        ids = a["pids"].astype(np.int64)
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        t, i, o = t[order], i[order], o[order]
        if offsets is not None and ids is not None:
            offsets, ids = take_csr(offsets, ids, order)
        report = replace(report, sorted_rows=True)
    return RequestTrace(t, i, o, epoch=epoch, prefix_offsets=offsets, prefix_ids=ids, source=source, report=report)


def _with_gaps(series: RateSeries, detect_gaps: bool, min_expected: float) -> RateSeries:
    if not detect_gaps:
        return series
    values, gaps, partial = mask_partial(series.values, series.period_s, min_expected)
    if not gaps and not partial:
        return series
    spans = tuple((series.start_s + lo * series.period_s, series.start_s + hi * series.period_s) for lo, hi in gaps)
    report = replace(series.report, gap_bins=sum(h - lo for lo, h in gaps), gaps=spans,
                     partial_bins=tuple(series.start_s + i * series.period_s for i in partial))
    return series.with_values(values, report=report)


def load_series(
    path: str | Path, *, fmt: str = "auto", time_col: str | None = None, value_col: str | None = None,
    time_unit_s: float | None = None, period_s: float | None = None, values_are_counts: bool = False,
    max_bad_rows: float = DEFAULT_MAX_BAD_ROWS, detect_gaps: bool | None = None,
    gap_min_expected: float = DEFAULT_MIN_EXPECTED,
) -> RateSeries:
    """Read a rate series: ServeGen client file or directory, ``time,value`` CSV, or Prometheus range JSON.

    Values are requests per second unless ``values_are_counts`` (then requests per bin). The bin length is
    inferred from the most common spacing; ``period_s`` coarser than that (a whole multiple) aggregates after
    gap detection, any other value is taken as the data's own bin length. Runs of zero amid clear traffic are
    collection gaps and become NaN (see :mod:`fleetwise.traffic.gaps`); by default this is on except for a
    single ServeGen client file, whose zero windows are real (the client was idle). A series without a single
    known value, or whose samples are too sparse or too far apart for a grid (see
    :func:`~fleetwise.traffic.convert.grid_series`), is an InputFormatError naming the file.
    """
    path = Path(path)
    if fmt == "auto":
        fmt = formats.detect(path, prefer="series" if value_col else None)
    if fmt in formats.TRACE_FORMATS:
        raise InputFormatError(f"this is a request trace ({fmt}); aggregate it with a frequency", file=str(path))
    if fmt == "prometheus":
        series = _prometheus(path)
    elif fmt == "servegen":
        series = _servegen(path, max_bad_rows)
    else:
        cols = formats.series_columns(path, time_col, value_col, time_unit_s)
        t, v, epoch, report = _read_pairs(path, cols, max_bad_rows)
        series = grid_series(t, v, epoch=epoch, counts=values_are_counts, source=f"series:{path}", report=report)
    if not np.isfinite(series.values).any():
        raise InputFormatError("the series has no known values (every value is missing: empty, NaN or null)",
                               file=str(path))
    if detect_gaps is None:
        detect_gaps = not (fmt == "servegen" and path.is_file())
    return _regrid(_with_gaps(series, detect_gaps, gap_min_expected), period_s)


def _regrid(series: RateSeries, period_s: float | None) -> RateSeries:
    if not period_s or abs(period_s - series.period_s) < 1e-9:
        return series
    k = period_s / series.period_s
    if k > 1 and abs(k - round(k)) < 1e-9:
        return series.resample(period_s)
    return grid_series(series.starts, series.values, epoch=series.epoch, period_s=period_s,
                       source=series.source, report=series.report)


def _read_pairs(path: Path, cols: formats.Columns, max_bad_rows: float, names: list[str] | None = None):
    bad = BadRows(path, file_kind(path), header=names is None)
    ts, vs, flags, rows = [], [], set(), 0
    for offset, batch in _batches(path, [cols.time, cols.value], bad, names=names):
        t, bad_t, is_epoch = parse_time(batch[cols.time], cols.time_unit_s)
        v, bad_v = parse_float(batch[cols.value], allow_missing=True)
        bad_v |= v < 0
        bad.add(bad_t, offset, cols.time, batch[cols.time])
        bad.add(bad_v, offset, cols.value, batch[cols.value])
        keep = ~(bad_t | bad_v)
        bad.count += int((~keep).sum())
        rows += len(keep)
        flags.add(is_epoch)
        ts.append(t[keep])
        vs.append(v[keep])
    report = _check_bad(bad, rows, max_bad_rows)
    return np.concatenate(ts), np.concatenate(vs), flags == {True}, report


def _servegen_folder(path: Path) -> Path:
    """The folder of client files a ServeGen path means: itself, or the one client folder below it (the dataset's
    root holds ``<category>/<model>/chunk-*-trace.csv``); several are an error that names a few."""
    if not path.is_dir() or any(path.glob("*.csv")):
        return path
    folders = sorted({f.parent for f in path.rglob("*.csv")})
    if len(folders) == 1:
        return folders[0]
    if not folders:
        raise InputFormatError("no ServeGen client files (*.csv) in the directory or below it", file=str(path))
    names = ", ".join(str(f.relative_to(path)) for f in folders[:4])
    more = f" and {len(folders) - 4} more" if len(folders) > 4 else ""
    raise InputFormatError(f"holds {len(folders)} ServeGen client folders ({names}{more}); pass one of them",
                           file=str(path))


def _servegen(path: Path, max_bad_rows: float) -> RateSeries:
    path = _servegen_folder(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise InputFormatError("no ServeGen client files (*.csv) in the directory", file=str(path))
    cols = formats.Columns(formats.SERVEGEN_COLUMNS[0], value=formats.SERVEGEN_COLUMNS[1])
    ts, vs, rows, bad, first = [], [], 0, 0, []
    for f in files:
        t, v, _, report = _read_pairs(f, cols, max_bad_rows, names=formats.SERVEGEN_COLUMNS)
        ts.append(t)
        vs.append(np.nan_to_num(v))
        rows, bad = rows + report.rows, bad + report.bad_rows
        first.extend(f"{f.name} {d}" if len(files) > 1 else d for d in report.first_bad)
    # Sum the clients window by window (they share the window grid).
    keys, inverse = np.unique(np.concatenate(ts), return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(vs), minlength=len(keys))
    name = f"servegen:{path}" + (f" ({len(files)} clients)" if len(files) > 1 else "")
    report = LoadReport(rows=rows, bad_rows=bad, first_bad=tuple(first[:3]), file=str(path))
    return grid_series(keys, total, epoch=False, counts=False, source=name, report=report)


def _prometheus(path: Path) -> RateSeries:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"not valid JSON ({exc})", file=str(path)) from None
    data = doc.get("data", doc) if isinstance(doc, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or (data.get("resultType") not in (None, "matrix")):
        raise InputFormatError(
            "expected a Prometheus range-query result (data.resultType 'matrix' with data.result[].values)",
            file=str(path), field="data.result",
        )
    ts, vs = [], []
    for k, item in enumerate(result):
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise InputFormatError("series has no 'values' list", file=str(path), entry=f"result[{k}]")
        try:
            arr = np.array([(float(p[0]), float(p[1])) for p in values], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError, IndexError):
            raise InputFormatError("values must be [time, \"number\"] pairs", file=str(path),
                                   entry=f"result[{k}]", field="values") from None
        _check_points(arr, path, k)
        ts.append(arr[:, 0])
        vs.append(arr[:, 1])
    if not ts or not sum(len(t) for t in ts):
        raise InputFormatError("the query result is empty", file=str(path), field="data.result")
    # sum() over the label sets, as the PromQL query would: align on timestamps, missing points stay missing.
    t_all = np.unique(np.concatenate(ts))
    total = np.zeros(len(t_all))
    seen = np.zeros(len(t_all), dtype=bool)
    for t, v in zip(ts, vs, strict=True):
        idx = np.searchsorted(t_all, t)
        ok = np.isfinite(v)
        np.add.at(total, idx[ok], v[ok])
        seen[idx[ok]] = True
    total[~seen] = np.nan
    return grid_series(t_all, total, epoch=True, source=f"prometheus:{path}",
                       report=LoadReport(rows=int(sum(len(t) for t in ts)), file=str(path)))


def _check_points(points: np.ndarray, path: Path, k: int) -> None:
    """Prometheus [time, value] points: Unix seconds within the range every reader accepts, values not negative
    (NaN and infinite values are stale or missing samples and stay missing)."""
    checks = ((0, bad_times(points[:, 0]), f"time {{:g}} is not a number of seconds within +-{MAX_TIME_S:g}"),
              (1, points[:, 1] < 0, "value {:g} is negative (a rate cannot be)"))
    for col, bad, problem in checks:
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InputFormatError(problem.format(points[j, col]), file=str(path), entry=f"result[{k}]",
                                   field=f"values[{j}]")


def load(path: str | Path, *, fmt: str = "auto", **options) -> RequestTrace | RateSeries:
    """A trace or a series, whichever the file holds."""
    path = Path(path)
    if fmt == "auto":
        fmt = formats.detect(path, prefer="trace" if options.get("input_col") or options.get("output_col")
                             else "series" if options.get("value_col") else None)
    if fmt not in formats.FORMATS:
        raise ConfigError(f"unknown format '{fmt}' (choose from {', '.join(formats.FORMATS)})")
    if fmt in formats.TRACE_FORMATS:
        keys = ("time_col", "input_col", "output_col", "time_unit_s", "max_bad_rows")
        return load_trace(path, fmt=fmt, **{k: v for k, v in options.items() if k in keys and v is not None})
    keys = ("time_col", "value_col", "time_unit_s", "period_s", "values_are_counts", "max_bad_rows",
            "detect_gaps")
    return load_series(path, fmt=fmt, **{k: v for k, v in options.items() if k in keys and v is not None})


def load_as_series(path: str | Path, period_s: float | None = None, **options) -> RateSeries:
    """A rate series from either kind of file; a trace is binned at ``period_s`` (default 5 minutes) and a
    series is aggregated to it (after gap detection on its own bins)."""
    obj = load(path, **options)
    if isinstance(obj, RequestTrace):
        series = trace_to_series(obj, period_s or 300.0)
        return _with_gaps(series, options.get("detect_gaps") is not False, DEFAULT_MIN_EXPECTED)
    return _regrid(obj, period_s)
