"""``fleetwise traffic``: summarize, convert and synthesize traffic (traces and rate series)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from fleetwise.cli import checks
from fleetwise.cli.output import console, err_console, fmt_num, print_json
from fleetwise.errors import ConfigError
from fleetwise.traffic import (
    FORMATS,
    RateSeries,
    RequestTrace,
    SyntheticSpec,
    load,
    rate_multiply,
    series_time_compress,
    series_to_trace,
    synthetic_series,
    synthetic_trace,
    time_compress,
    trace_to_series,
)
from fleetwise.traffic.columns import TIME_UNITS
from fleetwise.traffic.durations import parse_duration
from fleetwise.traffic.lengths import EmpiricalLengths, LengthDist
from fleetwise.traffic.load import DEFAULT_MAX_BAD_ROWS
from fleetwise.traffic.records import SECONDS_PER_DAY, SECONDS_PER_HOUR
from fleetwise.traffic.summary import hhmm
from fleetwise.traffic.synth import DEFAULT_LENGTHS
from fleetwise.traffic.write import write_series_csv, write_trace_csv

traffic_app = typer.Typer(help="Summarize, convert and synthesize traffic: request traces and rate series.",
                          no_args_is_help=True)

# Options shared with `fleetwise forecast` (and later `optimize` / `simulate`).
Fmt = Annotated[str, typer.Option("--format", help=f"File format ({', '.join(FORMATS)}); auto-detected by default.")]
TimeCol = Annotated[str | None, typer.Option("--time-col", help="Column with the arrival / period time.")]
InputCol = Annotated[str | None, typer.Option("--input-col", help="Trace column with input (prompt) tokens.")]
OutputCol = Annotated[str | None, typer.Option("--output-col", help="Trace column with output tokens.")]
ValueCol = Annotated[str | None, typer.Option("--value-col", help="Series column with the rate (req/s).")]
TimeUnit = Annotated[str | None, typer.Option(
    "--time-unit", help="Unit of numeric times: s, ms, us, ns (default s; Mooncake: ms).")]
MaxBad = Annotated[float, typer.Option(
    "--max-bad-rows", help="Skip up to this many bad rows (a fraction if < 1) before failing.",
    callback=checks.non_negative)]
Counts = Annotated[bool, typer.Option("--counts", help="Series values are requests per period, not req/s.")]
NoGaps = Annotated[bool, typer.Option(
    "--keep-zeros", help="Do not treat runs of zero amid traffic as collection gaps.")]
Compress = Annotated[float, typer.Option("--time-compress", help="Replay the trace this many times faster.",
                                         callback=checks.number(gt=0, what="time-compression factor"))]
Multiply = Annotated[float, typer.Option("--rate-multiply", help="Thin or copy requests to scale the rate.",
                                         callback=checks.number(gt=0, what="rate multiplier"))]
OutCsv = Annotated[str, typer.Option("--out", "-o", help="Output CSV.", metavar="<path>",
                                     callback=checks.output_file())]

PlotOpt = Annotated[str | None, typer.Option("--plot", help="Write a figure: .png, .svg, .pdf or .html.",
                                              metavar="<path>", callback=checks.plot_file)]

PROFILE_BIN = checks.duration(min_s=60, max_s=SECONDS_PER_DAY, why="the profile samples the rate per minute "
                              "within one day")


def load_input(path: Path, *, fmt: str = "auto", time_col: str | None = None, input_col: str | None = None,
               output_col: str | None = None, value_col: str | None = None, time_unit: str | None = None,
               max_bad_rows: float = DEFAULT_MAX_BAD_ROWS, counts: bool = False, keep_zeros: bool = False
               ) -> RequestTrace | RateSeries:
    """Load a trace or series with the CLI's options and print the loader's warnings to stderr."""
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise ConfigError(f"--time-unit must be one of {', '.join(TIME_UNITS)} (got '{time_unit}')")
    obj = load(path, fmt=fmt, time_col=time_col, input_col=input_col, output_col=output_col, value_col=value_col,
               time_unit_s=TIME_UNITS[time_unit] if time_unit else None, max_bad_rows=max_bad_rows,
               values_are_counts=counts or None, detect_gaps=not keep_zeros)
    for line in obj.report.warnings():
        err_console.print(f"[yellow]fleetwise: warning:[/] {path}: {line}", highlight=False)
    return obj


def series_input(path: Path | None, freq: str | None, *, what: str, trace_bin_s: float, **load_opts) -> RateSeries:
    """The demand series a command works on: a series file (resampled to ``freq``), a trace binned at ``freq``
    (default ``trace_bin_s``), or, without a file, the built-in synthetic workload."""
    period_s = parse_duration(freq, "--freq") if freq else None
    if path is None:
        err_console.print(f"fleetwise: no {what} given; using the built-in synthetic workload (14 days, 5-minute "
                          "bins, seed 0)", highlight=False)
        series = synthetic_series()
    else:
        obj = load_input(path, **load_opts)
        if isinstance(obj, RequestTrace):
            return trace_to_series(obj.with_span(), period_s or trace_bin_s)
        series = obj
    return series.resample(period_s) if period_s else series  # at its own period, resample returns the series


def fmt_duration(seconds: float) -> str:
    if seconds >= SECONDS_PER_DAY:
        return f"{seconds / SECONDS_PER_DAY:.1f} d"
    if seconds >= SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_HOUR:.1f} h"
    return f"{seconds:.0f} s"


def _render_summary(s) -> None:
    console.print(f"[bold]{s.source}[/]: {s.kind}, {fmt_duration(s.duration_s)}, {s.requests:,.0f} requests, "
                  f"mean {fmt_num(s.mean_rate_rps)} req/s" + (f", {s.missing_bins} missing bins" if s.missing_bins else ""))
    t = Table(box=box.SIMPLE_HEAD, title=f"Rate per {fmt_duration(s.rate_bin_s)} bin (req/s) and burstiness")
    for c in ("mean", "p50", "p95", "max", "peak/mean", "inter-arrival CV"):
        t.add_column(c, justify="right")
    cv = f"{s.interarrival_cv:.2f}" if s.interarrival_cv is not None else "-"
    t.add_row(*(fmt_num(s.rate[k]) for k in ("mean", "p50", "p95", "max")), f"{s.peak_to_mean:.2f}", cv)
    console.print(t)
    if s.input_tokens:
        lt = Table(box=box.SIMPLE_HEAD, title="Token lengths")
        for c in ("", "mean", "p50", "p90", "p95", "p99", "max"):
            lt.add_column(c, justify="right")
        for name, d in (("input", s.input_tokens), ("output", s.output_tokens)):
            lt.add_row(name, *(f"{d[k]:,.0f}" for k in ("mean", "p50", "p90", "p95", "p99", "max")))
        console.print(lt)
        console.print(f"Mean throughput demand: {s.tokens_per_s_mean:,.0f} tokens/s (input + output)")
    p = s.profile
    if p is not None and len(p.weekday):
        top = sorted(range(len(p.weekday)), key=lambda k: -p.rate_rps[k, 2])[:5]
        pt = Table(box=box.SIMPLE_HEAD, title=f"Busiest weekday x {p.bin_s / 60:g}-min cells (by P95 rate; "
                                               f"{len(p.weekday)} cells, --json for all)")
        for c in ("weekday", "time", "samples", "P50", "P75", "P95"):
            pt.add_column(c, justify="right")
        for k in top:
            pt.add_row(p.weekday_label(int(p.weekday[k])), hhmm(float(p.bin_start_s[k])),
                       str(int(p.samples[k])), *(fmt_num(v) for v in p.rate_rps[k]))
        console.print(pt)


def summarize_cmd(
    file: Annotated[Path, typer.Argument(help="Trace or rate-series file (or a ServeGen client directory).")],
    bin_: Annotated[str | None, typer.Option("--bin", help="Rate bin for traces (default 1min).",
                                                callback=checks.duration())] = None,
    profile_bin: Annotated[str, typer.Option(help="Time-of-day bin of the weekday profile (1min to 1d).",
                                             callback=PROFILE_BIN)] = "5min",
    json_: Annotated[bool, typer.Option("--json", help="Print JSON (with the full profile).")] = False,
    plot: PlotOpt = None,
    fmt: Fmt = "auto", time_col: TimeCol = None, input_col: InputCol = None, output_col: OutputCol = None,
    value_col: ValueCol = None, time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    counts: Counts = False, keep_zeros: NoGaps = False,
) -> None:
    """Rates, burstiness, token lengths and the weekday x time-of-day demand profile of a trace or series."""
    from fleetwise.traffic.summary import summarize

    obj = load_input(file, fmt=fmt, time_col=time_col, input_col=input_col, output_col=output_col,
                     value_col=value_col, time_unit=time_unit, max_bad_rows=max_bad_rows, counts=counts,
                     keep_zeros=keep_zeros)
    summary = summarize(obj, bin_s=parse_duration(bin_, "--bin") if bin_ else None,
                        profile_bin_s=parse_duration(profile_bin, "--profile-bin"))
    if plot:
        from fleetwise.report.figures import save_figure, traffic_figure, traffic_tables

        save_figure(traffic_figure(summary), plot, title=f"Traffic summary: {summary.source}",
                    tables=traffic_tables(summary))
    if json_:
        print_json(summary.to_dict())
    else:
        _render_summary(summary)
        if plot:
            console.print(f"Figure written to {plot}")


def _lengths(path: Path | None) -> EmpiricalLengths | tuple[LengthDist, LengthDist]:
    """(input, output) pairs resampled from a trace, or the built-in chat lognormals."""
    if path is None:
        return DEFAULT_LENGTHS
    src = load_input(path)
    if not isinstance(src, RequestTrace):
        raise ConfigError("--lengths-from must be a request trace", file=str(path))
    return EmpiricalLengths(src.input_tokens, src.output_tokens)


JsonOut = Annotated[bool, typer.Option("--json", help="Print what was written as JSON (file, kind, size, span).")]


def _written(out: str, obj, json_out: bool, text: str) -> None:
    """Say what a command wrote: a line for people, or JSON (file, kind, requests or bins, span, mean rate)."""
    if not json_out:
        console.print(text)
        return
    if isinstance(obj, RequestTrace):
        info = {"kind": "trace", "requests": len(obj), "duration_s": obj.duration_s,
                "mean_rate_rps": obj.mean_rate_rps}
    else:
        import numpy as np

        info = {"kind": "series", "bins": len(obj), "period_s": obj.period_s, "duration_s": len(obj) * obj.period_s,
                "mean_rate_rps": float(np.nanmean(obj.values)) if len(obj) else None}
    print_json({"out": str(out), **info})


def convert_cmd(
    file: Annotated[Path, typer.Argument(help="Trace or rate-series file.")],
    out: OutCsv,
    freq: Annotated[str | None, typer.Option(
        help="Aggregate a trace to a rate series with this bin (e.g. 5min), or resample a series.",
        callback=checks.duration())] = None,
    compress: Compress = 1.0,
    multiply: Multiply = 1.0,
    lengths_from: Annotated[Path | None, typer.Option(
        help="Series -> trace: resample (input, output) pairs from this trace (default: chat lognormals).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling.", callback=checks.seed)] = 0,
    fmt: Fmt = "auto", time_col: TimeCol = None, input_col: InputCol = None, output_col: OutputCol = None,
    value_col: ValueCol = None, time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    counts: Counts = False, keep_zeros: NoGaps = False, json_out: JsonOut = False,
) -> None:
    """Trace -> rate series (--freq), series -> sampled trace, or a scaled replay of a trace (CSV out)."""
    obj = load_input(file, fmt=fmt, time_col=time_col, input_col=input_col, output_col=output_col,
                     value_col=value_col, time_unit=time_unit, max_bad_rows=max_bad_rows, counts=counts,
                     keep_zeros=keep_zeros)
    if isinstance(obj, RequestTrace):
        trace = rate_multiply(time_compress(obj.with_span(), compress), multiply, seed=seed)
        if freq:
            series = trace_to_series(trace, parse_duration(freq, "--freq"))
            write_series_csv(series, out)
            _written(out, series, json_out, f"{len(series)} bins of {series.period_s:g} s written to {out}")
        else:
            write_trace_csv(trace, out)
            _written(out, trace, json_out, f"{len(trace):,} requests written to {out}")
        return
    series = obj.resample(parse_duration(freq, "--freq")) if freq else obj
    lengths = _lengths(lengths_from)
    series = series_time_compress(series.with_values(series.values * multiply), compress)
    trace = series_to_trace(series, lengths, seed=seed)
    write_trace_csv(trace, out)
    _written(out, trace, json_out, f"{len(trace):,} requests sampled from {len(series)} bins written to {out}")


def synth_cmd(
    out: OutCsv,
    days: Annotated[float, typer.Option(help="Length of the series.")] = 14.0,
    period: Annotated[str, typer.Option(help="Bin length.", callback=checks.duration())] = "5min",
    base_rps: Annotated[float, typer.Option(help="Mean weekday rate (req/s).")] = 20.0,
    daily_amplitude: Annotated[float, typer.Option(help="Daily swing: rate x (1 + a cos(...)).")] = 0.5,
    peak_hour: Annotated[float, typer.Option(help="Hour of the daily peak.")] = 14.0,
    weekend_factor: Annotated[float, typer.Option(help="Weekend rate multiplier.")] = 0.7,
    trend_per_day: Annotated[float, typer.Option(help="Relative growth per day.")] = 0.0,
    noise_cv: Annotated[float, typer.Option(help="Correlated multiplicative noise (CV).")] = 0.1,
    bursts_per_day: Annotated[float, typer.Option(help="Mean number of bursts per day.")] = 1.0,
    burst_multiplier: Annotated[float, typer.Option(help="Rate multiplier during a burst.")] = 2.0,
    trace: Annotated[bool, typer.Option("--trace", help="Write sampled requests instead of the rate series.")
                     ] = False,
    lengths_from: Annotated[Path | None, typer.Option(
        help="With --trace: resample lengths from this trace (default: chat lognormals).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.", callback=checks.seed)] = 0,
    json_out: JsonOut = False,
) -> None:
    """A seeded synthetic workload (daily/weekly seasonality, trend, noise, bursts) as a series or a trace.

    The spec's numbers are checked where it is built (SyntheticSpec): finite, in range, a bounded size."""
    spec = SyntheticSpec(days=days, period_s=parse_duration(period, "--period"), base_rps=base_rps,
                         daily_amplitude=daily_amplitude, peak_hour=peak_hour, weekend_factor=weekend_factor,
                         trend_per_day=trend_per_day, noise_cv=noise_cv, bursts_per_day=bursts_per_day,
                         burst_multiplier=burst_multiplier)
    series = synthetic_series(spec, seed)
    if not trace:
        write_series_csv(series, out)
        _written(out, series, json_out, f"{len(series)} bins of {spec.period_s:g} s written to {out}")
        return
    lengths = _lengths(lengths_from)
    expected = float(math.fsum(series.counts))
    with err_console.status(f"sampling ~{expected:,.0f} requests..."):
        sampled = synthetic_trace(spec, lengths, seed=seed)  # the same series, regenerated from the seed
        write_trace_csv(sampled, out)
    _written(out, sampled, json_out, f"{len(sampled):,} requests written to {out}")


def register(app: typer.Typer) -> None:
    traffic_app.command("summarize")(summarize_cmd)
    traffic_app.command("convert")(convert_cmd)
    traffic_app.command("synth")(synth_cmd)
    app.add_typer(traffic_app, name="traffic")
