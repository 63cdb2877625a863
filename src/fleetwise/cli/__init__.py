"""The ``fleetwise`` command line: a thin layer that parses options, calls a library function, renders.

User errors (:class:`fleetwise.errors.FleetwiseError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import typer

from fleetwise.errors import FleetwiseError

app = typer.Typer(
    name="fleetwise",
    help="Run LLM inference fleets at the lowest cost that still meets their latency SLOs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


_registered = False


def _register() -> None:
    global _registered
    if _registered:  # main() may run many times in one process (tests)
        return
    _registered = True
    from fleetwise.cli import catalog, forecast, optimize, perf, plan, simulate, traffic

    plan.register(app)
    perf.register(app)
    traffic.register(app)
    forecast.register(app)
    optimize.register(app)
    simulate.register(app)
    catalog.register(app)


def main() -> None:
    """Console-script entry point."""
    _register()
    try:
        app()
    except FleetwiseError as exc:
        print(f"fleetwise: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("fleetwise: interrupted", file=sys.stderr)
        sys.exit(130)
