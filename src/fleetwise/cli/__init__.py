"""The ``fleetwise`` command line: a thin layer that parses options, calls a library function, renders.

User errors (:class:`fleetwise.errors.FleetwiseError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import typer

from fleetwise.atomic import output_batch
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
    from fleetwise.cli import emulate, replay

    emulate.register(app)
    replay.register(app)


def main() -> None:
    """Console-script entry point: run one command; a failure is one line on stderr and a non-zero exit, and
    leaves none of the command's output files behind (they are renamed into place only when it succeeds)."""
    _register()
    held: list = []  # outputs written before a failure: announced already, withdrawn by the failure
    try:
        with output_batch() as held:
            code = app(standalone_mode=False)  # returns the exit code of --help, or of an interrupt (130)
            if code:
                raise _Failed(code)
    except _Failed as failed:
        _exit(failed.code, "fleetwise: interrupted" + _withdrawn(held) if failed.code == 130 else None)
    except FleetwiseError as exc:
        _exit(exc.exit_code, f"fleetwise: error: {exc}{_withdrawn(held)}")
    except typer.TyperException as exc:  # click's usage errors: an unknown option, a value of the wrong type, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: typer has printed its help already
            _exit(2)
        _exit(getattr(exc, "exit_code", 2), f"fleetwise: error: {_usage_message(exc)}")
    except (KeyboardInterrupt, typer.Abort):
        _exit(130, "fleetwise: interrupted" + _withdrawn(held))
    except OSError as exc:  # the environment, not the input: a full disk, a vanished directory, ...
        where = f"{exc.filename}: " if exc.filename else ""
        _exit(1, f"fleetwise: error: {where}{exc.strerror or exc}{_withdrawn(held)}")


def _withdrawn(held: list) -> str:
    """' (not written: a.csv, b.html)' when a failure withdrew outputs that may already have been announced."""
    return f" (not written: {', '.join(str(target) for _, target in held)})" if held else ""


class _Failed(Exception):
    """A command ended with a non-zero exit code but no exception (an interrupt that typer caught)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _exit(code: int, message: str | None = None) -> None:
    if message:
        print(message.replace("\n", " "), file=sys.stderr)
    sys.exit(code)


def _usage_message(exc: typer.TyperException) -> str:
    """One line for click's usage errors: the subcommand, the message and where help is."""
    ctx = getattr(exc, "ctx", None)
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    command = " ".join(reversed(names))
    message = " ".join((exc.format_message() if hasattr(exc, "format_message") else str(exc)).split())
    hint = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) is not None else ""
    return f"{command + ': ' if command else ''}{message}{hint}"
