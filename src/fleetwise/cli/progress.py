"""Progress of long work on stderr, the same in every command: a rich bar on a terminal, a plain line every few
seconds when stderr is a pipe or a file (a CI log, ``2> run.log``), nothing with ``--quiet``.

    with progress("simulate", "simulating budget", total=len(reqs), unit="requests", quiet=quiet) as p:
        simulate_fleet(..., progress=lambda f: p.update(f * len(reqs)))

A plain line reads ``simulate: simulating budget: 42% (29,717/70,755 requests), 12 s elapsed``. The first comes
one interval after the work starts (``FLEETWISE_PROGRESS_EVERY_S`` seconds, default 5), so short work prints
none; when any was printed, a last one follows when the work ends. Lines come from a background thread, so work
that reports nothing for a while (one solver call) still shows it is alive.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from fleetwise.errors import ConfigError

EVERY_S_ENV = "FLEETWISE_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 5.0

def _checked_quiet(quiet: bool) -> bool:
    """The --quiet option, and a bad FLEETWISE_PROGRESS_EVERY_S refused before any work."""
    if not quiet:
        every_s()
    return quiet


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.", callback=_checked_quiet)]


def every_s() -> float:
    """Seconds between plain progress lines: ``FLEETWISE_PROGRESS_EVERY_S``, else 5."""
    text = os.environ.get(EVERY_S_ENV, "").strip()
    if not text:
        return DEFAULT_EVERY_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ConfigError(f"{EVERY_S_ENV}={text[:40]!r}: must be a number of seconds > 0 (unset it for the "
                          f"default {DEFAULT_EVERY_S:g})")
    return value


class Tracker:
    """What long work reports as it goes; cheap enough to call at every step."""

    def __init__(self, command: str, description: str, total: float | None, unit: str) -> None:
        self.command, self.description, self.total, self.unit = command, description, total, unit
        self.done = 0.0
        self.note = ""
        self.t0 = time.monotonic()
        self._listeners: list = []

    def update(self, done: float | None = None, *, total: float | None = None, description: str | None = None,
               note: str | None = None) -> None:
        """Record how much is done (in the unit of ``total``) and, optionally, a new total, description or note."""
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if note is not None:
            self.note = note
        for listener in self._listeners:
            listener()

    def amount(self) -> str:
        """'42% (29,717/70,755 requests)', '' when the total is unknown; the note after it."""
        parts = []
        if self.total:
            fraction = min(max(self.done / self.total, 0.0), 1.0)
            unit = f" {self.unit}" if self.unit else ""
            parts.append(f"{fraction:.0%} ({_count(self.done)}/{_count(self.total)}{unit})")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def line(self) -> str:
        """The plain progress line."""
        amount = self.amount()
        return (f"{self.command}: {self.description}{': ' + amount if amount else ''}, "
                f"{time.monotonic() - self.t0:,.0f} s elapsed")


def _count(x: float) -> str:
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:,.1f}"


@contextmanager
def progress(command: str, description: str, *, total: float | None = None, unit: str = "",
             quiet: bool = False) -> Iterator[Tracker]:
    """Show the progress of the work inside the block (see the module docstring); yields its :class:`Tracker`."""
    tracker = Tracker(command, description, total, unit)
    if quiet:
        yield tracker
        return
    from fleetwise.cli.output import err_console

    if err_console.is_terminal:
        with _bar(tracker, err_console):
            yield tracker
        return
    interval = every_s()
    with _ticker(tracker, interval) as printed:
        yield tracker
    last = tracker.line()
    if printed and printed[-1] != last:  # the log of long work ends with its total
        _write(last)


@contextmanager
def _bar(tracker: Tracker, console) -> Iterator[None]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                   TimeElapsedColumn(), console=console, transient=True)
    task = bar.add_task(tracker.description, total=tracker.total, amount="")
    tracker._listeners.append(lambda: bar.update(task, description=tracker.description, total=tracker.total,
                                                 completed=tracker.done, amount=tracker.amount()))
    with bar:
        yield


@contextmanager
def _ticker(tracker: Tracker, interval: float) -> Iterator[list[str]]:
    """A thread that prints the tracker's line every ``interval`` seconds; yields the lines printed so far."""
    printed: list[str] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            line = tracker.line()
            if not _write(line):
                return
            printed.append(line)

    thread = threading.Thread(target=run, name="fleetwise-progress", daemon=True)
    thread.start()
    try:
        yield printed
    finally:
        stop.set()
        thread.join()


def _write(line: str) -> bool:
    """One whole line on stderr; False when stderr is gone (a closed pipe)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        return False
    return True
