"""The ``fleetwise`` command line: a thin layer that parses options, calls a library function, renders.

Start-up stays fast: ``fleetwise --help`` lists the commands from :data:`COMMANDS` without importing them, and a
command imports only its own module (and what that needs) when it runs or shows its own help.

User errors (:class:`fleetwise.errors.FleetwiseError`) become one line on stderr and a non-zero exit. SIGTERM
(``kill``, ``timeout``, a container stop) ends a command the way Ctrl-C does - its outputs withdrawn, its
temporary files removed, one line on stderr - with exit code 143.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click
import typer
from typer.core import TyperGroup

from fleetwise.atomic import output_batch
from fleetwise.errors import FleetwiseError

# Every command: the module under fleetwise.cli that registers it, and the first sentence of its help (what
# `fleetwise --help` lists; tests/cli/test_startup.py checks both against the commands themselves).
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("plan", ("Find the cheapest replica configuration (GPU, count/TP, precision, batch cap, offer) meeting "
                      "the SLO.")),
    "perf": ("perf", "Predict memory, throughput and latency of one replica (default mode: offline max throughput)."),
    "calibrate": ("perf", ("Fit an engine's efficiency factors to measured points by least squares; report the error "
                           "per tier.")),
    "validate": ("perf", ("Compare the model's predictions with measured points: error per tier (MAPE) and the worst "
                          "point.")),
    "forecast": ("forecast", ("Forecast request rate as quantiles; --backtest measures every method's accuracy "
                              "honestly first.")),
    "optimize": ("optimize", ("Reserved / spot / on-demand counts over time (MILP), reservations to buy, and savings "
                              "vs baselines.")),
    "simulate": ("simulate", ("Replay a trace through a simulated fleet: cost, TTFT/TPOT per class, SLO attainment, "
                              "preemptions.")),
    "compare": ("simulate", "Run several strategies on the same trace, fleet and seed; print them side by side."),
    "catalog": ("catalog", ("List GPUs, models, precisions, instance offers or published quality figures, each with "
                            "its source and as-of date.")),
    "emulate": ("emulate", ("Serve GPU-free workers that behave like vLLM on the given GPU: OpenAI API, vLLM metrics, "
                            "spot notices.")),
    "replay": ("replay", ("Replay a request trace open loop against OpenAI-compatible endpoints; measure TTFT, TPOT, "
                          "ITL, E2E.")),
    "testbed": ("testbed", ("Run a trace through emulated workers driven by the real controller, with spot notices "
                            "and controller kills, and print measured vs simulated: cost, TTFT/TPOT, SLO attainment, "
                            "requests lost, restarts.")),
    "traffic": ("traffic", "Summarize, convert and synthesize traffic: request traces and rate series."),
    "control": ("control", ("Run the controller: every --fast-interval it reads the fleet and its vLLM metrics, "
                            "handles spot notices (drain, replace spot-first, on-demand fallback) and reacts to SLO "
                            "burn; every --interval it forecasts and re-optimizes.")),
    "gateway": ("gateway", ("Serve the OpenAI-compatible gateway: POST /v1/chat/completions and /v1/completions "
                            "(stream or not), GET /v1/models, /v1/usage, /metrics.")),
    "report": ("report", "Reports over what the gateway and the controller recorded."),
}
_SETTINGS = {"pretty_exceptions_enable": False, "add_completion": False, "rich_markup_mode": "rich",
             "context_settings": {"help_option_names": ["-h", "--help"]}}


def _flags_without_type() -> None:
    """Typer 0.2x prints a flag's type in rich help (``--json <bool>``), which reads as if it took a value
    (``--json true`` is an error). A flag shows no type, as in click's own help."""
    option = getattr(typer.core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "_fleetwise", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag and not self.count else original(self, ctx)

    display_type_rich._fleetwise = True
    option.display_type_rich = display_type_rich


_flags_without_type()


class _Listed(click.Command):
    """A command as ``fleetwise --help`` lists it, before its module is imported."""


class LazyGroup(TyperGroup):
    """The top-level group: each command's module is imported the first time the command is looked up to run or
    to show its own help; while the group's help is rendered, the commands stand as :class:`_Listed` entries."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False
        for name, (_, summary) in COMMANDS.items():
            self.commands.setdefault(name, _Listed(name, help=summary, short_help=summary))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self.commands.get(cmd_name)
        if isinstance(cmd, _Listed) and not self._listing:
            self.commands.update(_load(COMMANDS[cmd_name][0]))
            cmd = self.commands[cmd_name]
        return cmd

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _load(module: str) -> dict[str, click.Command]:
    """The click commands that ``fleetwise.cli.<module>`` registers, by name."""
    sub = typer.Typer(**_SETTINGS)
    importlib.import_module(f"fleetwise.cli.{module}").register(sub)
    return dict(typer.main.get_group(sub).commands)


# The list of commands is click's plain help: typer's rich help would import rich's Markdown and Syntax (pygments,
# markdown-it) and double the start-up time of `fleetwise --help`; each command's own help stays rich.
app = typer.Typer(
    name="fleetwise",
    help="Run LLM inference fleets at the lowest cost that still meets their latency SLOs.",
    no_args_is_help=True,
    cls=LazyGroup,
    **{**_SETTINGS, "rich_markup_mode": None},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"fleetwise {version('fleetwise')}")
        except PackageNotFoundError:  # run from a source tree without installing
            print("fleetwise (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.",
                                      callback=_version, is_eager=True),
) -> None:
    # A callback makes typer build a group even before any command is registered (they come from LazyGroup).
    pass


_registered = False


def _register() -> None:
    """Register every command on ``app`` at once, importing all their modules (for tests that drive ``app``
    directly; the console script leaves this to :class:`LazyGroup`)."""
    global _registered
    if _registered:  # may be called many times in one process (tests)
        return
    _registered = True
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        importlib.import_module(f"fleetwise.cli.{module}").register(app)


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
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, then exit 2
            plain = exc.format_message()  # rich help is printed already (the message is empty); plain is not
            if plain.strip():
                print(plain)
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
