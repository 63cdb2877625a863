"""Shared CLI output helpers: JSON to stdout, atomic file writes, rich console."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console

from fleetwise.atomic import check_output_path, write_atomic

__all__ = ["check_output_path", "console", "err_console", "fmt_num", "print_json", "split_csv", "write_atomic"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # a message or warning stays one line in a log or a pipe


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout (no NaN/Infinity)."""
    print(json.dumps(_clean(data), indent=2))


def split_csv(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated lists alike: --gpu h100 --gpu a100,l4."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def fmt_num(value: float, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits below 1,000, thousands separators above, never an
    exponent (``18,500``, not ``1.85e+04``); NaN as '-'."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"
