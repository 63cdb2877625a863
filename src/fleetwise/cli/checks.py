"""Checks of option values, shared by every command.

The factories return typer callbacks -- ``typer.Option(callback=number(gt=0))`` -- which click runs while it
parses the command line: a bad value fails before any file is read or any work starts, and the ConfigError
names the option and becomes one line on stderr (:func:`fleetwise.cli.main`). :func:`check_number` and
:func:`horizon_steps` serve checks that need other values or loaded data first.

Numbers must be finite everywhere: NaN passes comparisons such as ``x <= 0`` and infinity passes ``x > 0``, and
both then surface as tracebacks, hangs or silently NaN results deep inside the library. Sizes that set how much
work a run does (simulated requests, forecast steps) have an upper bound stated with its reason; the sizes of
data built from files or specs (bins of a trace, sampled requests, synthetic series) are bounded where they
are built, in fleetwise.traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import typer

from fleetwise.atomic import check_output_path
from fleetwise.errors import ConfigError
from fleetwise.traffic.durations import parse_duration
from fleetwise.traffic.records import SECONDS_PER_DAY

MAX_SIMULATED_REQUESTS = 1_000_000
"""perf simulates request by request: a million take a few seconds and ~250 MB; 1e8 would run for hours."""
MAX_INSTANCES = 10_000
"""A simulated fleet (replicas, reserved instances): 10,000 simulate in seconds; 1e8 never finish."""
MAX_CONTROL_STEPS = 500_000
"""Control intervals a simulated replay spans (a year of 1-minute intervals): each is a policy step and a
timeline row, ~30 s per million for a reactive policy (and ~1 GB)."""
MAX_HORIZON_DAYS = 366
"""The longest --horizon: a year; longer forecasts of request rate are not meaningful."""
MAX_HORIZON_STEPS = 10_000
"""Bins ahead: 30 days of 5-minute bins (8,640) already take ~40 s and 3 GB to forecast."""

Callback = Callable[..., Any]


def option_name(param: typer.CallbackParam) -> str:
    """The option as users write it: its first long name ('--out' for '-o/--out')."""
    return next((o for o in param.opts if o.startswith("--")), param.opts[0] if param.opts else str(param.name))


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _span(seconds: float) -> str:
    """Seconds in the largest unit they fill: '366 d', '5 min', '0.0001 s'."""
    for unit, size in (("d", SECONDS_PER_DAY), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.4g} {unit}"
    return f"{seconds:g} s"


def _rule(integer: bool, gt, ge, lt, le) -> str:
    """'a finite positive number', 'a whole number >= 1 and <= 10,000', 'a finite number > 0 and < 1', ..."""
    noun = "whole number" if integer else "finite number"
    if gt == 0 and lt is None and le is None:
        return "a positive whole number" if integer else "a finite positive number"
    bounds = [f"{op} {_num(b)}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]
    return f"a {noun} {' and '.join(bounds)}" if bounds else f"a {noun}"


def check_number(name: str, value, *, gt=None, ge=None, lt=None, le=None, what: str | None = None,
                 why: str | None = None):
    """``value`` unchanged if it is None, or finite and within the bounds; else a ConfigError naming ``name``.

    ``what`` names what the option sets ('SLO target'); ``why`` gives the reason for the upper bound (for the
    lower one if there is no upper one), shown when that bound is broken."""
    if value is None:
        return value
    finite = isinstance(value, int) or math.isfinite(value)
    too_high = finite and ((lt is not None and not value < lt) or (le is not None and not value <= le))
    too_low = finite and ((gt is not None and not value > gt) or (ge is not None and not value >= ge))
    if finite and not too_high and not too_low:
        return value
    label = f"{name}: the {what}" if what else name
    message = f"{label} must be {_rule(isinstance(value, int), gt, ge, lt, le)} (got {_num(value)})"
    if why and (too_high or (too_low and lt is None and le is None)):
        message += f": {why}"
    raise ConfigError(message)


def number(*, gt=None, ge=None, lt=None, le=None, what: str | None = None, why: str | None = None) -> Callback:
    """Callback: the option's value must be finite and within the given bounds (see :func:`check_number`)."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value):
        if ctx.resilient_parsing:
            return value
        return check_number(option_name(param), value, gt=gt, ge=ge, lt=lt, le=le, what=what, why=why)

    return callback


def duration(*, min_s: float | None = None, max_s: float | None = None, why: str | None = None) -> Callback:
    """Callback: the option is a duration ('5min', '1h', '30s', ...) within [min_s, max_s] seconds."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is None or ctx.resilient_parsing:
            return value
        name = option_name(param)
        seconds = parse_duration(value, name)
        if (min_s is not None and seconds < min_s) or (max_s is not None and seconds > max_s):
            bounds = " and ".join(b for b in (f"at least {_span(min_s)}" if min_s is not None else "",
                                              f"at most {_span(max_s)}" if max_s is not None else "") if b)
            raise ConfigError(f"{name} must be {bounds} (got '{value}')" + (f": {why}" if why else ""))
        return value

    return callback


def output_file(*suffixes: str) -> Callback:
    """Callback: a file the command will write (checked up front: see :func:`fleetwise.atomic.check_output_path`),
    with one of ``suffixes`` if any are given."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is None or ctx.resilient_parsing:
            return value
        name = option_name(param)
        path = check_output_path(value, name)
        if suffixes and path.suffix.lower() not in suffixes:
            raise ConfigError(f"{name} must be a {' or '.join(suffixes)} file", file=str(path))
        return value

    return callback


def plot_file(ctx: typer.Context, param: typer.CallbackParam, value):
    """Callback: a figure the command will write (.png, .svg, .pdf or .html)."""
    if value is None or ctx.resilient_parsing:
        return value
    from fleetwise.report.figures import check_plot_path

    check_output_path(value, option_name(param))
    check_plot_path(value)
    return value


# The checks of option kinds that several commands share.
positive = number(gt=0)
non_negative = number(ge=0)
at_least_one = number(ge=1)
seed = number(ge=0, why="numpy seeds are non-negative")
fraction = number(ge=0, le=1)
slo_target = number(gt=0, what="SLO target")
_FLEET = "a larger fleet is beyond what the simulator is built for"
fleet_size = number(ge=0, le=MAX_INSTANCES, why=_FLEET)
replicas = number(ge=1, le=MAX_INSTANCES, why=_FLEET)
days = number(gt=0)
cold_start = number(ge=0, what="cold start")
horizon = duration(max_s=MAX_HORIZON_DAYS * SECONDS_PER_DAY, why="forecasts further ahead are not meaningful")


def horizon_steps(horizon: str, period_s: float, option: str = "--horizon") -> int:
    """Bins of ``period_s`` covering ``horizon`` (at least one; at most MAX_HORIZON_STEPS)."""
    steps = max(1, math.ceil(parse_duration(horizon, option) / period_s - 1e-9))
    if steps > MAX_HORIZON_STEPS:
        raise ConfigError(f"{option} {horizon} is {steps:,} bins of {period_s:g} s; at most {MAX_HORIZON_STEPS:,} "
                          "bins ahead (use a shorter horizon or longer bins, --freq)")
    return steps
