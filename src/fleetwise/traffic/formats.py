"""Known trace and series formats, their column names, and detection of which one a file is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fleetwise.errors import InputFormatError, quote_input
from fleetwise.traffic.tabular import _csv_header, file_kind, open_text

TRACE_FORMATS = ("azure", "burstgpt", "mooncake", "trace")
SERIES_FORMATS = ("servegen", "series", "prometheus")
FORMATS = ("auto", *TRACE_FORMATS, *SERIES_FORMATS)

SERVEGEN_COLUMNS = ["window_start_s", "rate_req_per_s", "cv", "dist", "arg1", "arg2"]

# Column-name aliases, lower case, most specific first.
TIME_ALIASES = ("timestamp", "time", "arrival_time", "arrival_s", "ts", "created_at", "window_start_s", "ds", "t")
INPUT_ALIASES = ("contexttokens", "input_tokens", "input_length", "prompt_tokens", "request tokens", "isl",
                 "num_prompt_tokens")
OUTPUT_ALIASES = ("generatedtokens", "output_tokens", "output_length", "completion_tokens", "response tokens",
                  "osl", "num_generated_tokens")
VALUE_ALIASES = ("value", "rate", "rate_rps", "rps", "qps", "total_rate_rps", "requests_per_s", "y")
PREFIX_ALIASES = ("hash_ids", "prefix_ids")


@dataclass(frozen=True)
class Columns:
    """Which columns hold what; time_unit_s converts numeric times to seconds (Mooncake uses ms)."""

    time: str
    input: str | None = None
    output: str | None = None
    value: str | None = None
    prefix: str | None = None
    time_unit_s: float = 1.0


PRESETS = {
    "azure": Columns("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": Columns("Timestamp", "Request tokens", "Response tokens"),
    "mooncake": Columns("timestamp", "input_length", "output_length", prefix="hash_ids", time_unit_s=1e-3),
}


def _pick(names: list[str], aliases: tuple[str, ...]) -> str | None:
    lower = {n.lower().strip(): n for n in names}
    return next((lower[a] for a in aliases if a in lower), None)


def column_names(path: Path) -> list[str]:
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types (ArrowInvalid, OSError, ...)
            raise InputFormatError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    if kind == "jsonl":
        with open_text(path) as handle:
            for line in handle:
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        raise InputFormatError("first record is not JSON", file=str(path), line=1) from None
                    return list(rec) if isinstance(rec, dict) else []
        raise InputFormatError("the file is empty", file=str(path))
    return _csv_header(path, ",")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect(path: Path, prefer: str | None = None) -> str:
    """The format name of a file or directory, or a clear error when it cannot be told.

    ``prefer`` ("trace" or "series") is what the user's column options imply; it decides when the columns
    alone do not."""
    if not path.exists():
        raise InputFormatError("no such file or directory", file=str(path))
    if path.is_dir():
        return "servegen"
    kind = file_kind(path)
    if kind == "json":
        return "prometheus"
    names = column_names(path)
    lower = {n.lower().strip() for n in names}
    if {"timestamp", "contexttokens", "generatedtokens"} <= lower:
        return "azure"
    if {"timestamp", "request tokens", "response tokens"} <= lower:
        return "burstgpt"
    if {"timestamp", "input_length", "output_length"} <= lower and kind == "jsonl":
        return "mooncake"
    if kind == "csv" and len(names) == 6 and _is_number(names[0]) and _is_number(names[1]):
        return "servegen"
    if prefer in ("trace", "series"):
        return prefer
    if _pick(names, INPUT_ALIASES) and _pick(names, OUTPUT_ALIASES):
        return "trace"
    if _pick(names, VALUE_ALIASES):
        return "series"
    if _pick(names, INPUT_ALIASES) or _pick(names, OUTPUT_ALIASES):
        return "trace"  # a token column: a trace missing the other one, which trace_columns names
    if kind == "csv" and _series_pair(names, None, None):
        return "series"
    raise InputFormatError(
        f"cannot tell the format from the columns {_listed(names)}: a request trace has time, input-token and "
        "output-token columns (e.g. 'timestamp', 'input_tokens', 'output_tokens'), a rate series time and value "
        "columns (e.g. 'timestamp', 'rate_rps'); name them with --time-col, --input-col, --output-col or "
        f"--value-col, or pass --format ({', '.join(FORMATS[1:])})",
        file=str(path),
    )


def _listed(names, most: int = 6) -> str:
    """Quoted names, at most ``most`` of them (a wide file's header is not echoed whole)."""
    shown = ", ".join(quote_input(n, 40) for n in list(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _series_pair(names: list[str], time_col: str | None, value_col: str | None) -> tuple[str, str] | None:
    """(time, value) columns of a series, by the names given, else by their aliases; in a two-column file one
    named or known column says what the other is. None when that leaves either unknown (``foo,bar`` is not read
    as a series by guesswork)."""
    time = time_col or _pick(names, TIME_ALIASES)
    value = value_col or _pick(names, VALUE_ALIASES)
    if len(names) == 2 and (time or value) and not (time and value):
        other = [n for n in names if n not in (time, value)]
        time, value = (time, other[0]) if time else (other[0], value)
    return (time, value) if time and value else None


def trace_columns(
    path: Path, fmt: str, time_col: str | None, input_col: str | None, output_col: str | None,
    time_unit_s: float | None,
) -> Columns:
    """The columns to read for a request trace: the preset, overridden by any names the user gave."""
    names = column_names(path)
    base = PRESETS.get(fmt) or Columns(
        _pick(names, TIME_ALIASES) or "", _pick(names, INPUT_ALIASES), _pick(names, OUTPUT_ALIASES),
        prefix=_pick(names, PREFIX_ALIASES),
    )
    cols = Columns(
        time_col or base.time, input_col or base.input, output_col or base.output,
        prefix=base.prefix if base.prefix in names else None,
        time_unit_s=time_unit_s if time_unit_s is not None else base.time_unit_s,
    )
    for role, name in (("time", cols.time), ("input tokens", cols.input), ("output tokens", cols.output)):
        if not name:
            raise InputFormatError(
                f"no {role} column found among {', '.join(map(repr, names))}; name it with "
                f"--{role.split()[0]}-col", file=str(path),
            )
    return cols


def series_columns(path: Path, time_col: str | None, value_col: str | None, time_unit_s: float | None) -> Columns:
    names = column_names(path)
    pair = _series_pair(names, time_col, value_col)
    if pair is None:
        raise InputFormatError(
            f"cannot tell the time and value columns among {_listed(names)}: a rate series needs a time column "
            f"({_listed(TIME_ALIASES[:4])}, ...) and a value column ({_listed(VALUE_ALIASES[:4])}, ...); name "
            "them with --time-col and --value-col", file=str(path),
        )
    return Columns(pair[0], value=pair[1], time_unit_s=time_unit_s or 1.0)
