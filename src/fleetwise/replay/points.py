"""A replay's per-request file as calibration points, so a user can fit an engine profile on their own server.

``fleetwise replay --out requests.csv`` writes one row per request. The calibration fits rate-mode points (a
configuration at a request rate, with measured mean TTFT and inter-token latency), so the completed requests
are cut, in arrival order, into windows of at least :data:`MIN_WINDOW_REQUESTS` requests (at most
:data:`MAX_WINDOWS`); each window becomes one point at its mean input and output length and its request rate
per replica, measuring ``mean_ttft``, ``p99_ttft``, ``mean_itl`` (the mean TPOT: the average gap between
tokens), and ``mean_e2e``. This is an approximation the calibration states: the model predicts each window at
its mean lengths and an even arrival rate, while the trace had a length distribution and bursts - choose
windows of moderate load for the fit, where the two agree best.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from fleetwise.catalog.validation import read_text
from fleetwise.errors import InputFormatError
from fleetwise.perf.points import Case, Point
from fleetwise.replay.results import CSV_COLUMNS, OK

MIN_WINDOW_REQUESTS = 200
"""Completed requests per window: enough for a mean TTFT within a few percent on a chat trace's lengths."""
MAX_WINDOWS = 12
NEEDED = ("arrival_s", "input_tokens", "output_tokens", "ttft_ms", "tpot_ms", "e2e_ms", "status")


def is_replay_file(path: str | Path) -> bool:
    """Whether a CSV's header is that of ``fleetwise replay --out``."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = {h.strip() for h in f.readline().split(",")}
    except OSError:
        return False
    return {"ttft_ms", "e2e_ms", "status", "arrival_s"} <= header


def read_replay(path: str | Path) -> dict[str, np.ndarray]:
    """The completed requests of a replay file as arrays (arrival_s, input/output tokens, ttft/tpot/e2e ms)."""
    where = str(path)
    reader = csv.DictReader(io.StringIO(read_text(Path(path), InputFormatError), newline=""), strict=True)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in NEEDED if c not in header]
    if missing:
        raise InputFormatError(f"missing column '{missing[0]}' (a replay file has {', '.join(CSV_COLUMNS)})",
                               file=where, line=1)
    cols: dict[str, list[float]] = {c: [] for c in NEEDED if c != "status"}
    try:
        for raw in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if row.get("status") != OK:
                continue
            for c, values in cols.items():
                values.append(_number(row.get(c, ""), where, reader.line_num, c))
    except csv.Error as exc:
        raise InputFormatError(f"not valid CSV ({exc})", file=where, line=reader.line_num) from None
    out = {c: np.asarray(v, dtype=float) for c, v in cols.items()}
    order = np.argsort(out["arrival_s"], kind="stable")
    return {c: v[order] for c, v in out.items()}


def _number(text: str, where: str, line: int, field: str) -> float:
    if not text and field == "tpot_ms":  # a one-token answer, or a non-streamed one, has no TPOT
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise InputFormatError(f"not a number: {text[:40]!r}", file=where, line=line, field=field) from None
    if not math.isfinite(value) or value < 0 or (field.endswith("tokens") and value < 1):
        raise InputFormatError(f"out of range: {text[:40]!r}", file=where, line=line, field=field)
    return value


def replay_points(path: str | Path, *, model: str, gpu: str, gpus: int = 1, tp: int | None = None,
                  precision: str = "bf16", engine: str = "vllm", replicas: int = 1) -> list[Point]:
    """Rate-mode calibration points of a replay file (see the module docstring for the windows)."""
    if replicas < 1:
        raise InputFormatError("replicas must be >= 1", file=str(path))
    data = read_replay(path)
    n = len(data["arrival_s"])
    if n < MIN_WINDOW_REQUESTS:
        raise InputFormatError(f"{n} completed requests; a calibration point needs at least "
                               f"{MIN_WINDOW_REQUESTS} (replay a longer part of the trace)", file=str(path))
    windows = max(1, min(MAX_WINDOWS, n // MIN_WINDOW_REQUESTS))
    points = []
    for k, idx in enumerate(np.array_split(np.arange(n), windows)):
        t = data["arrival_s"][idx]
        span = float(t[-1] - t[0]) * len(idx) / max(len(idx) - 1, 1)  # n arrivals cover n gaps, not n - 1
        if span <= 0:
            continue
        case = Case(engine=engine, model=model, gpu=gpu, num_gpus=gpus, tp=tp or gpus, precision=precision,
                    isl=max(1, round(float(data["input_tokens"][idx].mean()))),
                    osl=max(1, round(float(data["output_tokens"][idx].mean()))), mode="rate",
                    rate_qps=len(idx) / span / replicas, batch=None)
        tpot = data["tpot_ms"][idx]
        measured = {"mean_ttft": float(data["ttft_ms"][idx].mean()),
                    "p99_ttft": float(np.percentile(data["ttft_ms"][idx], 99)),
                    "mean_e2e": float(data["e2e_ms"][idx].mean())}
        if np.isfinite(tpot).any():
            measured["mean_itl"] = float(np.nanmean(tpot))
        points.append(Point(case, line=k + 2, extra={"window": str(k)}, measured=measured, file=str(path)))
    if not points:
        raise InputFormatError("every window has zero duration (all arrivals at one instant)", file=str(path))
    return points
