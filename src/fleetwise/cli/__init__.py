"""The ``fleetwise`` command line: a thin layer that parses options, calls a library function, renders.

User errors (:class:`fleetwise.errors.FleetwiseError`) become one line on stderr and a non-zero exit. SIGTERM
(``kill``, ``timeout``, a container stop) ends a command the way Ctrl-C does - its outputs withdrawn, its
temporary files removed, one line on stderr - with exit code 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
    from fleetwise.cli import control, emulate, gateway, replay, report, testbed

    emulate.register(app)
    replay.register(app)
    control.register(app)
    testbed.register(app)
    gateway.register(app)
    report.register(app)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as from Ctrl-C (every cleanup runs)."""


@contextmanager
def _sigterm_interrupts() -> Iterator[list[int]]:
    """Within the block SIGTERM raises :class:`_Terminated` (once: a second one must not cut the cleanup short);
    yields a list that records it. The previous handler is restored after. Commands that handle SIGTERM
    themselves (replay, emulate's event loop) install their own handler inside and restore this one."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield got
        return

    def terminate(signum, frame) -> None:
        if not got:
            got.append(signum)
            raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main() -> None:
    """Console-script entry point: run one command; a failure is one line on stderr and a non-zero exit, and
    leaves none of the command's output files behind (they are renamed into place only when it succeeds)."""
    with _sigterm_interrupts() as terminated:
        try:
            _main(terminated)
        except _Terminated:  # arrived while another way out was being reported: still no traceback
            _exit(143, "fleetwise: terminated")


def _main(terminated: list[int]) -> None:
    held: list = []  # outputs written before a failure: announced already, withdrawn by the failure
    try:
        _register()
        with output_batch() as held:
            code = app(standalone_mode=False)  # returns the exit code of --help, or of an interrupt (130)
            if code:
                raise _Failed(code)
    except _Failed as failed:
        if failed.code != 130:
            _exit(failed.code)
        _interrupted(terminated, held)
    except FleetwiseError as exc:
        _exit(exc.exit_code, f"fleetwise: error: {exc}{_withdrawn(held)}")
    except typer.TyperException as exc:  # click's usage errors: an unknown option, a value of the wrong type, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: typer has printed its help already
            _exit(2)
        _exit(getattr(exc, "exit_code", 2), f"fleetwise: error: {_usage_message(exc)}")
    except (KeyboardInterrupt, typer.Abort):
        _interrupted(terminated, held)
    except OSError as exc:  # the environment, not the input: a full disk, a vanished directory, ...
        where = f"{exc.filename}: " if exc.filename else ""
        _exit(1, f"fleetwise: error: {where}{exc.strerror or exc}{_withdrawn(held)}")


def _interrupted(terminated: list[int], held: list) -> None:
    """Exit as the shell reports a signal: 128 + 2 for Ctrl-C, 128 + 15 for SIGTERM."""
    if terminated:
        _exit(143, "fleetwise: terminated" + _withdrawn(held))
    _exit(130, "fleetwise: interrupted" + _withdrawn(held))


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
