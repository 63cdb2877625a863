"""``fleetwise forecast``: quantile forecasts of request rate, with rolling-origin backtests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.table import Table

from fleetwise.cli import checks
from fleetwise.cli.output import console, err_console, fmt_num, print_json, split_csv
from fleetwise.cli.progress import Quiet, progress
from fleetwise.cli.traffic import (
    Counts,
    Fmt,
    InputCol,
    MaxBad,
    NoGaps,
    OutputCol,
    PlotOpt,
    TimeCol,
    TimeUnit,
    ValueCol,
    fmt_duration,
    series_input,
)
from fleetwise.errors import ConfigError
from fleetwise.forecast import METHODS, QuantileForecaster, backtest
from fleetwise.traffic import RateSeries
from fleetwise.traffic.load import DEFAULT_MAX_BAD_ROWS
from fleetwise.traffic.records import SECONDS_PER_DAY
from fleetwise.traffic.summary import hhmm

METHOD_CHOICES = ("auto", *METHODS)


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        qs = tuple(sorted({float(q) for q in split_csv([text])}))
    except ValueError:
        raise ConfigError(f"--quantiles must be numbers like 0.5,0.9,0.95 (got '{text}')") from None
    if not qs:
        raise ConfigError("--quantiles is empty")
    return qs


def _time_label(value, epoch: bool) -> str:
    if epoch:
        return str(value).replace("T", " ").rstrip("Z")
    day, rest = divmod(float(value), SECONDS_PER_DAY)
    return f"day {int(day)} {hhmm(rest)}"


def _render(series: RateSeries, fc, scores, chosen_score, horizon_steps: int) -> None:
    known = int(np.isfinite(series.values).sum())
    console.print(f"[bold]{series.source or 'series'}[/]: {len(series)} bins of {series.period_s:g} s "
                  f"({fmt_duration(len(series) * series.period_s)}, {len(series) - known} missing); "
                  f"method [bold]{fc.method}[/]; horizon {horizon_steps} bins")
    if scores:
        t = Table(box=box.SIMPLE_HEAD, title=f"Rolling-origin backtest, {horizon_steps} bins ahead "
                                             "(coverage = share of actuals <= the quantile; pinball in --json)")
        qs = sorted(scores[0].coverage)
        for c in ("method", "folds", "WAPE", "MAPE", *[f"cov q{q:g}" for q in qs]):
            t.add_column(c, justify="right")
        for s in scores:
            t.add_row(s.method, str(s.folds), f"{s.wape:.3f}", f"{s.mape:.3f}", *[f"{s.coverage[q]:.3f}" for q in qs],
                      style="bold" if s is chosen_score else None)
        console.print(t)
        for s in scores:
            if s.chosen:
                console.print(f"auto picked: {', '.join(f'{k} at {v} origins' for k, v in s.chosen.items())}")
    rows = fc.records()
    step = max(1, len(rows) // 24)
    t = Table(box=box.SIMPLE_HEAD, title="Forecast (req/s)" + (f", every {step}th bin (--json for all)"
                                                              if step > 1 else ""))
    for c in rows[0]:
        t.add_column(c, justify="right")
    for r in rows[::step]:
        t.add_row(*(_time_label(v, fc.epoch) if k == "time" else fmt_num(v, 4) for k, v in r.items()))
    console.print(t)


def forecast_cmd(
    series_file: Annotated[Path | None, typer.Argument(
        metavar="SERIES", help="Rate series or request trace (aggregated to --freq). Default: built-in synthetic.")
    ] = None,
    horizon: Annotated[str, typer.Option(help="How far ahead: 5min, 1h, 1d, ... (at most a year).",
                                         callback=checks.horizon)] = "1d",
    freq: Annotated[str | None, typer.Option(
        help="Bin length (a trace is aggregated to it, default 5min; a series is resampled).",
        callback=checks.duration())] = None,
    quantiles: Annotated[str, typer.Option(help="Comma-separated quantile levels.")] = "0.5,0.9,0.95",
    method: Annotated[str, typer.Option(help=f"One of {', '.join(METHOD_CHOICES)}.")] = "auto",
    do_backtest: Annotated[bool, typer.Option(
        "--backtest", help="Also score every method by rolling-origin backtest at this horizon.")] = False,
    folds: Annotated[int | None, typer.Option(help="Backtest origins (default: one per hour, or per step).",
                                                 callback=checks.at_least_one)] = None,
    history_days: Annotated[float, typer.Option(help="Backtest warm-up: history before the first origin.",
                                                callback=checks.non_negative)] = 7.0,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: PlotOpt = None,
    fmt: Fmt = "auto", time_col: TimeCol = None, value_col: ValueCol = None, input_col: InputCol = None,
    output_col: OutputCol = None, time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    counts: Counts = False, keep_zeros: NoGaps = False, quiet: Quiet = False,
) -> None:
    """Forecast request rate as quantiles; --backtest measures every method's accuracy honestly first."""
    if method not in METHOD_CHOICES:
        raise ConfigError(f"--method must be one of {', '.join(METHOD_CHOICES)} (got '{method}')")
    qs = _quantiles(quantiles)
    series = series_input(series_file, freq, what="SERIES", trace_bin_s=300.0, fmt=fmt, time_col=time_col, value_col=value_col, input_col=input_col,
                     output_col=output_col, time_unit=time_unit, max_bad_rows=max_bad_rows, counts=counts,
                     keep_zeros=keep_zeros)
    horizon_steps = checks.horizon_steps(horizon, series.period_s)
    scores, chosen = [], None
    if do_backtest:
        names = (*METHODS, "auto") if method == "auto" else (method,)
        with progress("forecast", f"backtesting {len(names)} method(s) at {horizon_steps} bins ahead", quiet=quiet):
            scores = backtest(series, horizon_steps, methods=names, quantiles=qs, history_days=history_days,
                              folds=folds)
        chosen = next((s for s in scores if s.method == method), None)
        if chosen is None:
            raise ConfigError(f"method '{method}' has too little history for a backtest after "
                              f"{history_days:g} day(s) of warm-up; raise --history-days")
    with progress("forecast", "forecasting", quiet=quiet):
        fc = QuantileForecaster(method).fit(series).predict_quantiles(horizon_steps, qs)
    for line in fc.warnings:
        err_console.print(f"[yellow]fleetwise: warning:[/] {line}", highlight=False, soft_wrap=True)
    if plot:
        from fleetwise.report.figures import forecast_figure, save_figure, score_table

        tables = [("Backtest", score_table(scores))] if scores else []
        note = " (band not calibrated: too little history)" if fc.warnings else ""
        save_figure(forecast_figure(series, fc), plot, title=f"Forecast: {series.source}{note}", tables=tables)
    if json_:
        out = {"method": fc.method, "requested_method": method, "period_s": series.period_s,
               "horizon_steps": horizon_steps, "quantiles": list(qs)}
        if chosen is not None:
            d = chosen.to_dict()
            out["backtest"] = {k: d[k] for k in ("wape", "mape", "pinball", "coverage", "under_provision", "folds")}
            out["backtest_all"] = [s.to_dict() for s in scores]
        out["warnings"] = list(fc.warnings)
        out["forecast"] = fc.records()
        print_json(out)
    else:
        _render(series, fc, scores, chosen, horizon_steps)
        if plot:
            console.print(f"Figure written to {plot}")


def register(app: typer.Typer) -> None:
    app.command("forecast")(forecast_cmd)
