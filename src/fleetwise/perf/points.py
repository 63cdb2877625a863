"""Benchmark points files: configurations to predict, optionally with measured metrics.

Columns (as in ``measured_calibration.csv``): ``engine, model, gpu, num_gpus, tp, precision, isl,
osl, mode, rate_qps, batch``; measured files add ``metric, value`` (one metric per row). Extra
columns are carried through untouched.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleetwise.errors import InputFormatError

KEY_COLUMNS = ("engine", "model", "gpu", "num_gpus", "tp", "precision", "isl", "osl", "mode", "rate_qps", "batch")
REQUIRED = ("model", "gpu", "num_gpus", "precision", "isl", "osl", "mode")

# Metric names of the measured data -> ServingMetrics fields.
METRIC_FIELDS = {
    "output_throughput": "output_throughput",
    "request_throughput": "request_throughput",
    "total_token_throughput": "total_token_throughput",
    "mean_ttft": "mean_ttft_ms",
    "p99_ttft": "p99_ttft_ms",
    "mean_itl": "mean_itl_ms",
    "p99_itl": "p99_itl_ms",
    "mean_tpot": "mean_tpot_ms",
    "mean_e2e": "mean_e2e_ms",
}


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")

    engine: str | None = None
    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    num_gpus: int = Field(ge=1)
    tp: int | None = Field(default=None, ge=1)
    precision: str = Field(min_length=1)
    isl: int = Field(ge=1)
    osl: int = Field(ge=1)
    mode: str
    rate_qps: float | None = Field(default=None, gt=0)
    batch: int | None = Field(default=None, ge=1)
    metric: str | None = None
    value: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("offline", "rate", "static", "concurrency"):
            raise ValueError("must be offline, rate, static or concurrency")
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


def _case(row: _Row) -> Case:
    return Case(
        engine=row.engine or "trtllm", model=row.model, gpu=row.gpu, num_gpus=row.num_gpus,
        tp=row.tp or row.num_gpus, precision=row.precision, isl=row.isl, osl=row.osl, mode=row.mode,
        rate_qps=row.rate_qps, batch=row.batch,
    )


def read_points(path: str | Path, *, measured: bool = False) -> tuple[list[Point], list[str]]:
    """Read a points CSV. With ``measured``, rows of the same case merge their metric/value pairs.

    Returns:
        The points in file order and the header (for writing predictions back out).
    """
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputFormatError(f"cannot read ({exc.strerror})", file=str(path)) from None
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED + (("metric", "value") if measured else ()) if c not in header]
        if missing:
            raise InputFormatError(f"missing column '{missing[0]}'", file=str(path), line=1)
        points: dict[Case, Point] = {}
        ordered: list[Point] = []
        for raw in reader:
            line = reader.line_num  # the physical line, right after blank lines and multi-line fields
            raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            try:
                row = _Row.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                name = str(err["loc"][0]) if err["loc"] else "?"
                raise InputFormatError(err["msg"], file=str(path), line=line, field=name) from None
            case = _case(row)
            if measured:
                if row.metric is None or row.value is None:
                    raise InputFormatError("measured rows need metric and value", file=str(path), line=line)
                point = points.get(case)
                if point is None:
                    point = points[case] = Point(case, line)
                    ordered.append(point)
                point.measured[row.metric] = row.value
            else:
                extra = {k: v for k, v in raw.items() if k not in KEY_COLUMNS}
                ordered.append(Point(case, line, extra))
    if not ordered:
        raise InputFormatError("no data rows", file=str(path))
    return ordered, header
