"""Columnar reading of CSV / Parquet / JSONL files into Arrow batches, with bad-row bookkeeping.

CSV cells are read as strings and parsed by :mod:`fleetwise.traffic.columns`, so one malformed cell costs one
row, not the whole load. CSV and Parquet are streamed block by block, so their memory stays bounded by one
block plus the output arrays; a JSONL file is parsed whole into one Arrow table (via a Python list of records
if it has malformed lines) before its batches are yielded, so it needs memory for all of it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from fleetwise.errors import InputFormatError

BLOCK_BYTES = 1 << 24
FIRST_BAD_SHOWN = 3


def file_kind(path: Path) -> str:
    """csv, parquet or jsonl, from the suffix (a .gz / .zst / .bz2 compression suffix is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".parquet", ".pq"):
        return "parquet"
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    if ext == ".json":
        return "json"
    return "csv"


@dataclass
class BadRows:
    """Counts bad rows and keeps the first few (row index, field, raw value) for the error message."""

    path: Path
    kind: str
    header: bool = True
    columns: int = 0  # CSV: fields a row must have (a row with more or fewer is rejected, as the reader does)
    delimiter: str = ","
    count: int = 0
    first: list[tuple[int, str, str]] = field(default_factory=list)
    rejected_lines: list[str] = field(default_factory=list)  # CSV lines with the wrong number of fields

    def add(self, bad: np.ndarray, offset: int, name: str, raw: pa.Array) -> None:
        idx = np.flatnonzero(bad)
        if idx.size == 0:
            return
        # Keep the earliest rows over all fields: a later field's bad cell may come first in the file.
        for i in idx[:FIRST_BAD_SHOWN]:
            self.first.append((offset + int(i), name, str(raw[int(i)].as_py())))
        self.first = sorted(self.first)[:FIRST_BAD_SHOWN]

    def describe(self) -> tuple[str, ...]:
        """The first bad rows as 'line N: field F: value V', line numbers as a text editor shows them."""
        what = "not a JSON object" if self.kind == "jsonl" else "wrong number of fields"
        rows = sorted(self.first)
        rejected, lines = self._locate([r for r, _, _ in rows])
        out = [f"line {ln}: {what}: {text[:60]!r}" for ln, text in rejected]
        for row, name, value in rows:
            line = lines.get(row)
            where = f"line {line}" if line else f"row {row + 1}"
            out.append(f"{where}: field '{name}': bad value {value[:40]!r}")
        return tuple(sorted(out, key=_line_key)[:FIRST_BAD_SHOWN])

    def _locate(self, rows: list[int]) -> tuple[list[tuple[int, str]], dict[int, int]]:
        """The first rejected lines as (line number, text), and the file line of each data row in ``rows``."""
        shown = self.rejected_lines[:FIRST_BAD_SHOWN]
        if self.kind not in ("csv", "jsonl") or not (rows or shown):
            return [(0, t) for t in shown], {}
        want, lines, rejected, row = set(rows), {}, [], -1
        try:
            with open_text(self.path) as handle:
                for number, is_row, text in self._records(handle):
                    if is_row:
                        row += 1
                        if row in want:
                            lines[row] = number
                    elif len(rejected) < len(shown):
                        rejected.append((number, text))
                    if len(lines) == len(want) and len(rejected) == len(shown):
                        break
        except (csv.Error, OSError):
            pass  # what was not located is described by its row number
        return rejected or [(0, t) for t in shown], lines

    def _records(self, handle) -> Iterator[tuple[int, bool, str]]:
        """(line number, is it a data row, text) of each non-blank record after the header; a CSV record whose
        quoted cell spans lines is one record, numbered by its first line."""
        if self.kind == "jsonl":
            rejected = set(self.rejected_lines)
            for number, line in enumerate(handle, 1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield number, text not in rejected, text
            return
        records = csv_records(handle, self.delimiter)
        head = next(records, None) if self.header else None
        columns = self.columns or (len(head[1]) if head else 0)
        for number, cells, text in records:
            yield number, len(cells) == columns, text


def csv_records(lines: Iterable[str], delimiter: str = ",") -> Iterator[tuple[int, list[str], str]]:
    """(first line number, cells, text) of each CSV record in ``lines``, skipping blank and whitespace-only
    lines; a quoted cell may span lines, so a record's number is the line it starts on."""
    taken: list[str] = []

    def feed() -> Iterator[str]:
        for line in lines:
            taken.append(line)
            yield line

    reader = csv.reader(feed(), delimiter=delimiter)
    start = 1
    for cells in reader:
        text = "".join(taken).rstrip("\r\n")
        taken.clear()
        if cells and (len(cells) > 1 or cells[0].strip()):
            yield start, cells, text
        start = reader.line_num + 1


@contextmanager
def utf8_text(path: Path) -> Iterator[io.TextIOWrapper]:
    """A strict UTF-8 reader over a (possibly compressed) text file: a binary file or a file that cannot be read
    is an InputFormatError naming it, not a traceback."""
    try:
        with open_text(path, strict=True) as handle:
            yield handle
    except UnicodeDecodeError:
        raise InputFormatError("not a UTF-8 text file", file=str(path)) from None
    except OSError as exc:
        raise InputFormatError(f"cannot read the file ({_first_line(exc)})", file=str(path)) from None


def csv_batches(
    path: Path, columns: list[str], bad: BadRows, *, names: list[str] | None = None, delimiter: str = ","
) -> Iterator[tuple[int, dict[str, pa.Array]]]:
    """Yield (row offset, {column: string array}) blocks of a CSV; ``names`` for a headerless file."""

    def on_invalid(row) -> str:
        if row.text.strip():  # a line of only spaces is as blank as an empty one
            bad.count += 1
            bad.rejected_lines.append(row.text)
        return "skip"

    try:
        header = names or _csv_header(path, delimiter)
        bad.columns, bad.delimiter = len(header), delimiter
        # Read with the cleaned header names (spaces, quotes and a byte-order mark stripped) and skip the
        # file's own header line, so ' input_tokens' and 'input_tokens' are the same column.
        read = pcsv.ReadOptions(block_size=BLOCK_BYTES, column_names=header, skip_rows=0 if names else 1,
                                encoding="utf8")
        parse = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid)
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputFormatError(
                f"missing column(s) {', '.join(map(repr, missing))}; the file has {', '.join(map(repr, header))}",
                file=str(path), line=1,
            )
        twice = [c for c in dict.fromkeys(columns) if header.count(c) > 1]
        if twice:
            raise InputFormatError(f"the header names the column {header.count(twice[0])} times; which one holds "
                                   "the data is ambiguous", file=str(path), line=1, field=twice[0])
        convert = pcsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
        stream = pa.input_stream(str(path), compression="detect")
        reader = pcsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
        offset = 0
        for batch in reader:
            yield offset, {c: batch.column(c) for c in columns}
            offset += batch.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, KeyError) as exc:
        raise InputFormatError(f"not a readable CSV file ({_first_line(exc)})", file=str(path)) from None


def open_text(path: Path, *, strict: bool = False):
    """A text reader over a possibly compressed (.gz/.bz2/.zst) file; a UTF-8 byte-order mark is dropped.
    Bytes that are not UTF-8 become U+FFFD unless ``strict`` (then reading raises UnicodeDecodeError)."""
    return io.TextIOWrapper(pa.input_stream(str(path), compression="detect"), encoding="utf-8-sig",
                            errors="strict" if strict else "replace")


def _csv_header(path: Path, delimiter: str) -> list[str]:
    try:
        with open_text(path) as handle:
            first = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise InputFormatError(f"cannot read the file ({_first_line(exc)})", file=str(path)) from None
    if not first:
        raise InputFormatError("the file is empty", file=str(path))
    return [c.strip().strip('"') for c in first.split(delimiter)]


def parquet_batches(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, pa.Array]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFormatError(f"not a readable Parquet file ({_first_line(exc)})", file=str(path)) from None
    have = pf.schema_arrow.names
    missing = [c for c in columns if c not in have]
    if missing:
        raise InputFormatError(
            f"missing column(s) {', '.join(map(repr, missing))}; the file has {', '.join(map(repr, have))}",
            file=str(path),
        )
    offset = 0
    for batch in pf.iter_batches(columns=columns, batch_size=1 << 20):
        yield offset, {c: batch.column(c) for c in columns}
        offset += batch.num_rows


def jsonl_batches(path: Path, columns: list[str], bad: BadRows) -> Iterator[tuple[int, dict[str, pa.Array]]]:
    """Yield blocks of a JSON-lines file, parsed whole first; a malformed line is counted as a bad row, not
    fatal."""
    import pyarrow.json as pjson

    try:
        stream = pa.input_stream(str(path), compression="detect")
        table = pjson.read_json(stream, read_options=pjson.ReadOptions(block_size=BLOCK_BYTES))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = _jsonl_slow(path, bad)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputFormatError(
            f"missing field(s) {', '.join(map(repr, missing))}; the records have "
            f"{', '.join(map(repr, table.column_names))}", file=str(path),
        )
    offset = 0
    for batch in table.select(columns).to_batches(max_chunksize=1 << 20):
        yield offset, {c: batch.column(c) for c in columns}
        offset += batch.num_rows


def _jsonl_slow(path: Path, bad: BadRows) -> pa.Table:
    """Line-by-line fallback that skips lines which are not JSON objects (and remembers them)."""
    records = []
    with open_text(path) as handle:
        for line in handle:
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise ValueError  # noqa: TRY004 - a record that is not an object is a bad row, counted below
            except ValueError:
                bad.count += 1
                bad.rejected_lines.append(line.rstrip("\r\n"))
                continue
            records.append(rec)
    if not records:
        raise InputFormatError("no JSON records found", file=str(path))
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):  # OverflowError: an integer >= 2**64
        return _mixed_table(records)


def _mixed_table(records: list[dict]) -> pa.Table:
    """Columns whose values mix types become strings, so the cell parsers can flag the odd ones as bad."""
    keys = list(dict.fromkeys(k for rec in records for k in rec))
    columns = {}
    for key in keys:
        values = [rec.get(key) for rec in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            columns[key] = pa.array([None if v is None else json.dumps(v) if isinstance(v, list | dict) else str(v)
                                     for v in values])
    return pa.table(columns)


def _line_key(text: str) -> int:
    head = text.split(":", 1)[0].split()
    return int(head[1]) if len(head) == 2 and head[1].isdigit() else 1 << 62


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
