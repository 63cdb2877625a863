"""Benchmark points files: configurations to predict, optionally with measured metrics.

Columns (as in ``measured_calibration.csv`` and ``measured_engines.csv``): ``engine, model, gpu,
num_gpus, tp, precision, isl, osl, mode, rate_qps, concurrency, batch``; measured files add ``metric,
value`` (one metric per row). Extra columns (``engine_version``, ``source``, ...) are carried through.

* ``mode`` is offline, rate, concurrency (closed loop, ``concurrency`` requests in flight) or static.
* ``isl``/``osl`` are token counts (a mean such as 508.7 is rounded) or ``sharegpt``: lengths drawn
  from the ShareGPT distribution of :mod:`fleetwise.perf.lengths`, with the run's mean lengths when its
  ``source`` states them ("mean in/out from totals 215.2/122.2").
* Requests a benchmark sent: a ``num_prompts`` column, else an offline row's ``batch`` (prompts submitted
  at once), else "N prompts" / "--num-prompts N" / "No. Prompts N" in ``source``; without one the
  simulation runs the default count of its mode.
* KV-cache dtype: a ``kv_dtype`` column, else what ``source`` states ("FP8-KV", "kv-cache-dtype fp8",
  "kv_cache_dtype fp8"), else for vLLM and SGLang rows with 8-bit weights their default ``--kv-cache-dtype
  auto`` (the model's activation dtype, 16-bit), else the precision's own (TensorRT-LLM fp8 rows cache FP8).
* Rows of one run (same key columns, ``engine_version`` and ``source``) merge their metrics; the same
  configuration measured by two runs stays two points.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fleetwise.catalog import Catalog, Model, load_catalog
from fleetwise.catalog.validation import PositiveInt, PositiveNumber, first_error, read_text
from fleetwise.errors import InputFormatError, UnknownNameError
from fleetwise.perf.lengths import SHAREGPT_MEANS
from fleetwise.perf.predict import MAX_REQUESTS, MAX_TOKENS

KEY_COLUMNS = (
    "engine", "model", "gpu", "num_gpus", "tp", "precision", "isl", "osl", "mode", "rate_qps", "concurrency", "batch",
)
REQUIRED = ("model", "gpu", "num_gpus", "precision", "isl", "osl", "mode")
Tokens = Annotated[PositiveInt, Field(le=MAX_TOKENS)]
BatchSize = Annotated[PositiveInt, Field(le=MAX_REQUESTS)]

# Metric names of the measured data -> ServingMetrics fields. Static ``mean_e2e`` is the wall time of the
# whole batch (vLLM benchmark_latency): with equal lengths every request of the batch finishes together.
METRIC_FIELDS = {
    "output_throughput": "output_throughput",
    "request_throughput": "request_throughput",
    "total_token_throughput": "total_token_throughput",
    "mean_ttft": "mean_ttft_ms",
    "median_ttft": "p50_ttft_ms",
    "p99_ttft": "p99_ttft_ms",
    "mean_itl": "mean_itl_ms",
    "median_itl": "p50_itl_ms",
    "p99_itl": "p99_itl_ms",
    "mean_tpot": "mean_tpot_ms",
    "median_tpot": "p50_tpot_ms",
    "p99_tpot": "p99_tpot_ms",
    "mean_e2e": "mean_e2e_ms",
    "median_e2e": "p50_e2e_ms",
}
SHAREGPT = "sharegpt"
_SHAREGPT_MEANS = re.compile(r"mean in/out from totals:? ([\d.]+)/([\d.]+)")
_FP8_KV = re.compile(r"FP8-KV|kv[-_]cache[-_]dtype[ =]+fp8", re.IGNORECASE)
AUTO_KV_ENGINES = ("vllm", "sglang")  # engines whose default KV-cache dtype is the model dtype, not the weights'
_PROMPTS = re.compile(r"(?:(\d[\d,]*) prompts|--num-prompts (\d+)|No\. Prompts (\d+))")


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")

    engine: str | None = None
    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    num_gpus: PositiveInt
    tp: PositiveInt | None = None
    precision: str = Field(min_length=1)
    isl: Tokens
    osl: Tokens
    mode: str
    rate_qps: PositiveNumber | None = None
    concurrency: BatchSize | None = None
    batch: BatchSize | None = None
    num_prompts: BatchSize | None = None
    kv_dtype: str | None = None
    source: str = ""
    lengths: str = "fixed"

    @model_validator(mode="before")
    @classmethod
    def _sharegpt(cls, raw: object) -> object:
        """``sharegpt`` lengths become the run's mean lengths (from ``source``) with lengths='sharegpt'."""
        if not isinstance(raw, dict):
            return raw
        named = [k for k in ("isl", "osl") if str(raw.get(k) or "").strip().lower() == SHAREGPT]
        if not named:
            return raw
        if len(named) == 1:
            raise _one_sided(named[0])
        means = _SHAREGPT_MEANS.search(str(raw.get("source") or ""))
        isl, osl = (float(means[1]), float(means[2])) if means else SHAREGPT_MEANS
        return {**raw, "isl": isl, "osl": osl, "lengths": SHAREGPT}

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("isl", "osl", mode="before")
    @classmethod
    def _mean_length(cls, value: object) -> object:
        """A mean length such as 508.7 (a run of random lengths) is rounded to whole tokens."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return value
        return round(number) if math.isfinite(number) and number >= 0.5 and not number.is_integer() else value

    @field_validator("rate_qps", mode="before")
    @classmethod
    def _inf_rate(cls, value: object, info: ValidationInfo) -> object:
        """An offline row's ``inf`` rate (all requests at once, as benchmark_serving records it) means no rate."""
        offline = info.data.get("mode") == "offline"
        return None if offline and isinstance(value, str) and value.strip().lower() in ("inf", "+inf") else value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("offline", "rate", "static", "concurrency"):
            raise ValueError("must be offline, rate, static or concurrency")
        return value


def _one_sided(name: str) -> ValueError:
    return ValueError(f"{name} is '{SHAREGPT}' but the other length is not: ShareGPT gives both")


class _MeasuredRow(_Row):
    metric: str = Field(min_length=1)
    value: PositiveNumber  # every metric is a throughput or a latency

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRIC_FIELDS:
            raise ValueError(f"unknown metric '{value}' (one of {', '.join(METRIC_FIELDS)})")
        return value


@dataclass(frozen=True)
class Case:
    """One configuration under one load: the key columns of a point."""

    engine: str
    model: str
    gpu: str
    num_gpus: int
    tp: int
    precision: str
    isl: int
    osl: int
    mode: str
    rate_qps: float | None
    batch: int | None
    concurrency: int | None = None
    lengths: str = "fixed"
    """'fixed' (every request isl/osl) or 'sharegpt' (the ShareGPT distribution with means isl/osl)."""
    num_requests: int | None = None
    """Requests the benchmark sent, when known (a burst of 50 at 10 req/s is not a steady state)."""
    kv_dtype: str | None = None
    """'fp8' or 'bf16' where the run's KV cache differs from the precision's; None: the precision's own."""

    @property
    def tier(self) -> str:
        return self.mode


@dataclass
class Point:
    """A case with its source line, extra columns and any measured metrics."""

    case: Case
    line: int
    extra: dict[str, str] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    file: str = ""  # the points file, for errors about this point


def _prompts(row: _Row) -> int | None:
    if row.num_prompts:
        return row.num_prompts
    if row.mode == "offline" and row.batch:
        return row.batch
    found = _PROMPTS.search(row.source) if row.mode != "static" else None
    if found:
        count = int(next(g for g in found.groups() if g).replace(",", ""))
        return count if 1 <= count <= MAX_REQUESTS else None
    return None


def _kv_dtype(row: _Row) -> str | None:
    if row.kv_dtype:
        return row.kv_dtype.lower()
    if _FP8_KV.search(row.source):
        return "fp8"
    if (row.engine or "") in AUTO_KV_ENGINES and row.precision.lower() in ("fp8", "int8"):
        return "bf16"
    return None


def _case(row: _Row) -> Case:
    return Case(
        engine=row.engine or "trtllm", model=row.model, gpu=row.gpu, num_gpus=row.num_gpus,
        tp=row.tp or row.num_gpus, precision=row.precision, isl=row.isl, osl=row.osl, mode=row.mode,
        rate_qps=row.rate_qps, batch=row.batch,
        # files written before the concurrency column gave the concurrency in `batch`
        concurrency=(row.concurrency or row.batch) if row.mode == "concurrency" else row.concurrency,
        lengths=row.lengths,
        num_requests=_prompts(row), kv_dtype=_kv_dtype(row),
    )


def read_points(
    path: str | Path, *, measured: bool = False, catalog: Catalog | None = None
) -> tuple[list[Point], list[str]]:
    """Read a points CSV. With ``measured``, rows of the same case merge their metric/value pairs.

    Measured points must name a model, GPU and precision of ``catalog`` (default: :func:`load_catalog`):
    one that nothing can be predicted for would silently drop out of the errors and the fit. Plain points
    may name anything; their predictions report what cannot be served.

    Returns:
        The points in file order and the header (for writing predictions back out).
    """
    path = Path(path)
    where = str(path)
    # strict: a quote left open is an error, not a cell that swallows the rest of the file
    reader = csv.DictReader(io.StringIO(read_text(path, InputFormatError), newline=""), strict=True)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise InputFormatError(f"not valid CSV ({exc})", file=where, line=1) from None
    missing = [c for c in REQUIRED + (("metric", "value") if measured else ()) if c not in header]
    if missing:
        raise InputFormatError(f"missing column '{missing[0]}'", file=where, line=1)
    twice = [h for i, h in enumerate(header) if h and h in header[:i]]
    if twice:  # csv.DictReader would silently keep only the last of the two
        raise InputFormatError("column appears twice in the header", file=where, line=1, field=twice[0])
    points: dict[tuple[Case, str, str], Point] = {}  # (case, engine_version, source) -> its point
    seen: dict[tuple[tuple[Case, str, str], str], int] = {}  # (run, metric) -> line it was measured on
    ordered: list[Point] = []
    row_model = _MeasuredRow if measured else _Row
    line = 1
    try:
        for raw in reader:
            line = reader.line_num  # the physical line, right after blank lines and multi-line fields
            if any((v or "").strip() for v in raw.get(None, ())):  # type: ignore[call-overload]
                raise InputFormatError(
                    f"more cells than the {len(header)} columns of the header", file=where, line=line
                )
            raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if measured and not (raw.get("metric") and raw.get("value")):
                raise InputFormatError("measured rows need metric and value", file=where, line=line)
            try:
                row = row_model.model_validate(raw)
            except ValidationError as exc:
                name, msg = first_error(exc)
                raise InputFormatError(msg, file=where, line=line, field=name) from None
            case = _case(row)
            if isinstance(row, _MeasuredRow):
                run = (case, raw.get("engine_version", ""), row.source)
                point = points.get(run)
                if point is None:
                    extra = {k: v for k, v in raw.items() if k not in KEY_COLUMNS + ("metric", "value", "unit")}
                    point = points[run] = Point(case, line, extra, file=where)
                    ordered.append(point)
                if row.metric in point.measured:
                    first = seen[run, row.metric]
                    raise InputFormatError(
                        f"'{row.metric}' of this case is measured twice (line {first} and here)",
                        file=where, line=line, field="metric",
                    )
                seen[run, row.metric] = line
                point.measured[row.metric] = row.value
            else:
                extra = {k: v for k, v in raw.items() if k not in KEY_COLUMNS}
                ordered.append(Point(case, line, extra, file=where))
    except csv.Error as exc:  # reported at the row that starts after the last good one
        raise InputFormatError(f"not valid CSV ({exc})", file=where, line=line + 1) from None
    if not ordered:
        raise InputFormatError("no data rows", file=where)
    if measured:
        check_points(ordered, catalog)
    return ordered, header


def context_problem(case: Case, model: Model) -> str:
    """Why a case's requests do not fit the model's context window, or '' when they do."""
    tokens = case.isl + case.osl
    if tokens > model.max_context:
        return f"isl + osl = {tokens:,} tokens exceed the {model.max_context:,}-token context of {model.id}"
    return ""


def check_points(points: Sequence[Point], catalog: Catalog | None = None) -> None:
    """Every point names a model, GPU and precision of the catalog and fits the model's context window,
    else an InputFormatError naming file, line and field.

    A measured point nothing can be predicted for would otherwise drop out of the errors and the fit
    like a configuration that does not fit in memory, and the file would silently count for less.
    """
    cat = catalog or load_catalog()
    for point in points:
        where = {"file": point.file or None, "line": point.line}
        for name, lookup in (("model", cat.model), ("gpu", cat.gpu), ("precision", cat.precision)):
            try:
                lookup(getattr(point.case, name))
            except UnknownNameError as exc:
                raise InputFormatError(exc.message, field=name, **where) from None
        problem = context_problem(point.case, cat.model(point.case.model))
        if problem:
            raise InputFormatError(problem, field="isl", **where)
