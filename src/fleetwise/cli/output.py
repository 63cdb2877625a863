"""Shared CLI output helpers: JSON to stdout, atomic file writes, rich console."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from fleetwise.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


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


def check_output_path(path: str | Path) -> Path:
    """Fail before any long work if an output file could not be written."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("output directory does not exist", file=str(path))
    return path


def write_atomic(path: str | Path, text: str) -> None:
    """Write a file via a temporary file and rename, so an interrupted run never leaves half a file."""
    path = check_output_path(path)
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def split_csv(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated lists alike: --gpu h100 --gpu a100,l4."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out
