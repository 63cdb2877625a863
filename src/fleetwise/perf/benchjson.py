"""``vllm bench serve --save-result`` files (also ``benchmarks/benchmark_serving.py``, and SGLang's
``bench_serving`` output, which uses the same keys) as calibration points: one measured point per run.

The file records the load and the measured metrics but not the hardware, so the server is named by the caller
(GPU, GPUs, precision; the engine defaults to ``vllm``). What is read, per run (vLLM's result JSON keys):

* model: ``model_id`` (a Hugging Face id the catalog resolves), unless given;
* lengths: ``total_input_tokens`` / ``completed`` and ``total_output_tokens`` / ``completed`` (mean lengths;
  the run's length distribution is not in the file, so the model sees every request at the means);
* load: ``max_concurrency`` set -> ``concurrency`` mode at that many requests in flight; ``request_rate`` a
  number -> ``rate`` mode at that rate; ``request_rate`` "inf" without a concurrency cap -> ``offline`` with
  ``num_prompts`` submitted at once;
* metrics: ``{mean,median,p99}_{ttft,tpot,itl,e2el}_ms``, ``output_throughput``, ``request_throughput``,
  ``total_token_throughput`` (whichever the file has).

A path may be one result file, a JSON list of results, or a directory of ``*.json`` results (a sweep).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fleetwise.errors import InputFormatError
from fleetwise.perf.points import Case, Point

_STATS = ("mean", "median", "p99")
_LATENCIES = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2e"}
_THROUGHPUTS = ("output_throughput", "request_throughput", "total_token_throughput")
_MARKERS = ("completed", "total_input_tokens", "total_output_tokens")


def _results(path: Path) -> list[tuple[str, int, dict]]:
    """(file, index in the file, result dict) of every result the path holds."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    out = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputFormatError(f"not a readable JSON file ({' '.join(str(exc).split())[:120]})",
                                   file=str(f)) from None
        items = data if isinstance(data, list) else [data]
        for k, item in enumerate(items):
            if isinstance(item, dict) and all(m in item for m in _MARKERS):
                out.append((str(f), k, item))
    return out


def is_bench_result(path: str | Path) -> bool:
    """Whether a path is a ``vllm bench serve`` result file (or a directory of them)."""
    p = Path(path)
    if not (p.is_dir() or p.suffix.lower() == ".json"):
        return False
    try:
        return bool(_results(p))
    except InputFormatError:
        return False


def _number(item: dict, key: str, where: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InputFormatError(f"'{key}' is not a finite number >= 0 (got {str(value)[:40]!r})", file=where)
    return float(value)


def bench_points(path: str | Path, *, gpu: str, gpus: int = 1, tp: int | None = None, precision: str = "bf16",
                 engine: str = "vllm", model: str | None = None) -> list[Point]:
    """One calibration point per run in ``path`` (see the module docstring)."""
    p = Path(path)
    results = _results(p)
    if not results:
        raise InputFormatError("no vllm bench serve result in it (a result has 'completed', 'total_input_tokens' "
                               "and 'total_output_tokens'; save one with --save-result)", file=str(p))
    points = []
    for where, k, item in results:
        completed = _number(item, "completed", where)
        if not completed:
            raise InputFormatError("the run completed no request", file=where, entry=str(k))
        name = model or item.get("model_id")
        if not isinstance(name, str) or not name:
            raise InputFormatError("names no model_id: give the model (--model)", file=where, entry=str(k))
        isl = max(1, round(_number(item, "total_input_tokens", where) / completed))
        osl = max(1, round(_number(item, "total_output_tokens", where) / completed))
        rate, concurrency = item.get("request_rate"), item.get("max_concurrency")
        prompts = int(_number(item, "num_prompts", where) or completed)
        if concurrency is not None:
            mode, rate_qps, batch, conc = "concurrency", None, None, int(_number(item, "max_concurrency", where))
        elif rate in (None, "inf") or (isinstance(rate, float) and math.isinf(rate)):
            mode, rate_qps, batch, conc = "offline", None, prompts, None
        else:
            mode, rate_qps, batch, conc = "rate", _number(item, "request_rate", where), None, None
        measured = {}
        for stat in _STATS:
            for key, metric in _LATENCIES.items():
                value = _number(item, f"{stat}_{key}_ms", where)
                if value is not None and value > 0:
                    measured[f"{stat}_{metric}"] = value
        for key in _THROUGHPUTS:
            value = _number(item, key, where)
            if value:
                measured[key] = value
        case = Case(engine=engine, model=name, gpu=gpu, num_gpus=gpus, tp=tp or gpus, precision=precision,
                    isl=isl, osl=osl, mode=mode, rate_qps=rate_qps, batch=batch, concurrency=conc,
                    num_requests=prompts)
        points.append(Point(case, line=k + 1, extra={"result": Path(where).name}, measured=measured, file=where))
    return points
