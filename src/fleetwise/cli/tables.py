"""Tables that fit the terminal: columns carry a priority and the least important ones are left out first.

Rich shrinks every column of a table wider than the terminal until cells read ``lam…``; dropping whole columns
keeps the ones shown legible. Priority 0 columns are always shown; the caption names what was left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


@dataclass(frozen=True)
class Column:
    """A column: its header, priority (0 = always shown, higher = dropped sooner) and alignment."""

    name: str
    priority: int = 0
    justify: str = "right"


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]], keep: Sequence[int], title: str | None) -> Table:
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i in keep:
        table.add_column(columns[i].name, justify=columns[i].justify, no_wrap=True)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def fit_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]],
              title: str | None = None) -> tuple[Table, list[str]]:
    """The table with as many columns as fit ``console.width``, added by priority; and the names left out."""
    order = sorted(range(len(columns)), key=lambda i: (columns[i].priority, i))
    keep: list[int] = []
    unbounded = console.options.update_width(100_000)  # measure the natural width, not one clamped to the terminal
    for i in order:
        trial = sorted([*keep, i])
        width = Measurement.get(console, unbounded, _table(columns, rows, trial, title)).maximum
        if columns[i].priority == 0 or width <= console.width:
            keep = trial
    dropped = [columns[i].name for i in range(len(columns)) if i not in keep]
    return _table(columns, rows, keep, title), dropped
