"""``fleetwise perf``, ``calibrate`` and ``validate``: the performance model from the command line."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetwise.catalog import load_catalog
from fleetwise.cli import checks
from fleetwise.cli.output import console, err_console, print_json, write_atomic
from fleetwise.cli.progress import Quiet, progress
from fleetwise.errors import ConfigError, InputFormatError, UnknownNameError
from fleetwise.perf.calibrate import FIT_TIERS, TIERS, calibrate, predict_case, predict_points, tier_errors
from fleetwise.perf.points import KEY_COLUMNS, SHAREGPT, check_points, read_points
from fleetwise.perf.predict import predict
from fleetwise.perf.profile import get_profile
from fleetwise.perf.replica import replica_from_names

PRED_COLUMNS = (
    "output_throughput", "request_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms",
    "p99_ttft_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
    "mean_e2e_ms",
)
# PRED.csv says median where the benchmarks do; ServingMetrics calls it p50.
_PRED_FIELDS = {c: c.replace("median_", "p50_") for c in PRED_COLUMNS}
GOALS = {"offline_throughput": 0.15, "rate_itl": 0.20, "rate_ttft": 0.30}
# Request counts the event simulation runs through, and its arrival rate.
SIM_SIZE = checks.number(ge=1, le=checks.MAX_SIMULATED_REQUESTS,
                         why="the event simulation of more runs for minutes to hours")
SIM_RATE = checks.number(ge=1e-6, why="slower is an idle replica (and near 1e-100 req/s the simulated clock "
                                          "stops advancing)")


def perf_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id, alias or Hugging Face id.")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU type (aliases resolve: H100, A100-SXM4-80GB, ...).")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs in the replica (num_gpus/tp data-parallel groups).",
                                      callback=checks.at_least_one)] = 1,
    tp: Annotated[int | None, typer.Option(help="Tensor-parallel degree (default: --gpus).",
                                              callback=checks.at_least_one)] = None,
    precision: Annotated[str, typer.Option(help="bf16, fp16, fp8, int8, int4, fp4.")] = "bf16",
    isl: Annotated[int, typer.Option(help="Input tokens per request.",
                                     callback=checks.number(ge=1, what="input length"))] = 1000,
    osl: Annotated[int, typer.Option(help="Output tokens per request.",
                                     callback=checks.number(ge=1, what="output length"))] = 250,
    rate: Annotated[float | None, typer.Option(help="Rate mode: arrivals per second.",
                                                  callback=SIM_RATE)] = None,
    concurrency: Annotated[int | None, typer.Option(help="Concurrency mode: requests kept outstanding.",
                                                       callback=SIM_SIZE)] = None,
    batch: Annotated[int | None, typer.Option(help="Static mode: one batch of this size.", callback=SIM_SIZE)
                     ] = None,
    arrival: Annotated[str, typer.Option(help="Rate-mode arrivals: poisson or constant.")] = "poisson",
    requests: Annotated[int | None, typer.Option(help="Requests to simulate (default by mode).",
                                                    callback=SIM_SIZE)] = None,
    max_batch: Annotated[int | None, typer.Option("--max-batch", help="Batch cap (default: the engine's).",
                                                     callback=checks.at_least_one)] = None,
    engine: Annotated[str, typer.Option(help="Engine profile: trtllm, vllm, sglang, or a .yaml profile.")] = "trtllm",
    points: Annotated[str | None, typer.Option(help="Predict every row of this POINTS.csv instead.")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="With --points: write predictions here (CSV).",
                                               callback=checks.output_file())] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Predict memory, throughput and latency of one replica (default mode: offline max throughput)."""
    if points:
        _perf_points(points, out)
        return
    if out:
        raise ConfigError("--out writes the predictions of --points; without --points the result is printed")
    if not model or not gpu:
        raise ConfigError("perf needs --model and --gpu (or --points FILE)")
    modes = [m for m, v in (("rate", rate), ("concurrency", concurrency), ("static", batch)) if v is not None]
    if len(modes) > 1:
        raise ConfigError("give at most one of --rate, --concurrency, --batch")
    mode = modes[0] if modes else "offline"
    replica = replica_from_names(model, gpu, gpus, tp, precision, engine, max_batch=max_batch)
    m = predict(replica, isl, osl, mode, rate_qps=rate, concurrency=concurrency, batch=batch,
                num_requests=requests, arrival=arrival)
    mem = replica.memory
    memory = {
        "weights_gib_per_gpu": mem.weight_bytes_per_gpu / 2**30,
        "kv_bytes_per_token": mem.kv_bytes_per_token,
        "kv_bytes_per_token_per_gpu": mem.kv_bytes_per_token_per_gpu,
        "kv_cache_gib_per_gpu": mem.kv_cache_bytes_per_gpu / 2**30,
        "kv_capacity_tokens": mem.kv_capacity_tokens,
        "max_concurrent_sequences": mem.max_sequences(isl + osl, replica.profile.kv_block_tokens),
    }
    if json_out:
        print_json({"replica": replica.label, "mode": mode, "engine": replica.profile.name,
                    "memory": memory, "metrics": m.to_dict()})
        return
    table = Table(title=f"{replica.label} - {mode} ({isl} in / {osl} out)", show_header=False)
    for k, v in memory.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")
    for k, v in m.to_dict().items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")
    console.print(table)


def _perf_points(path: str, out: str | None) -> None:
    pts, header = read_points(path)
    extra_cols = [h for h in header if h not in KEY_COLUMNS]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*KEY_COLUMNS, *extra_cols, *PRED_COLUMNS, "status"])
    for p in pts:
        c = p.case
        metrics, status = predict_case(c, get_profile(c.engine))
        values = [round(getattr(metrics, _PRED_FIELDS[k]), 3) if metrics else "" for k in PRED_COLUMNS]
        keys = [c.engine, c.model, c.gpu, c.num_gpus, c.tp, c.precision, *_lengths_cells(c), c.mode,
                *("" if v is None else v for v in (c.rate_qps, c.concurrency, c.batch))]
        writer.writerow([*keys, *[p.extra.get(k, "") for k in extra_cols], *values, status])
    if out:
        write_atomic(out, buf.getvalue())
        err_console.print(f"wrote {len(pts)} predictions to {out}")
    else:
        print(buf.getvalue(), end="")


def _lengths_cells(case) -> tuple[int | str, int | str]:
    """isl, osl as the points file gave them: numbers, or 'sharegpt' for ShareGPT lengths."""
    return (SHAREGPT, SHAREGPT) if case.lengths == SHAREGPT else (case.isl, case.osl)


def calibrate_command(
    points: Annotated[str, typer.Argument(help="Measured points CSV (engine,model,gpu,...,metric,value).")],
    engine: Annotated[str | None, typer.Option(
        help="Engine profile to start from: trtllm (default), vllm, sglang, or .yaml; in a file of several "
             "engines, the rows of this one are fitted.")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Where to write the fitted profile YAML "
                                        "(default: profile.yaml).", callback=checks.output_file())] = None,
    output: Annotated[str | None, typer.Option("--output", hidden=True, help="--out's old name.",
                                               callback=checks.output_file())] = None,
    name: Annotated[str | None, typer.Option(help="Name of the fitted profile (default: the engine's).")] = None,
    max_evals: Annotated[int, typer.Option(help="Model evaluations the fit may use.",
                                           callback=checks.at_least_one)] = 150,
    tiers: Annotated[str, typer.Option(help=f"Tiers to fit, comma-separated, from {', '.join(TIERS)}.")] = ",".join(FIT_TIERS),
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="With a `fleetwise replay --out` file: the model the replayed server ran.")] = None,
    gpu: Annotated[str | None, typer.Option(help="With a replay file: the server's GPU type.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="With a replay file: GPUs per replica (tensor parallel).",
                                      callback=checks.at_least_one)] = 1,
    precision: Annotated[str | None, typer.Option(help="With a replay file: the server's precision.")] = None,
    replicas: Annotated[int, typer.Option(help="With a replay file: replicas the replay spread its requests over.",
                                          callback=checks.at_least_one)] = 1,
    quiet: Quiet = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON: the profile written, its fit error per "
                                                          "tier and what its points cover.")] = False,
) -> None:
    """Fit an engine's efficiency factors to measured points by least squares; report the error per tier.

    POINTS is a measured points CSV; or the per-request file of `fleetwise replay --out` (then give --model,
    --gpu, --precision and, when the replay used several URLs, --replicas): its requests are cut into windows
    of at least 200, each a rate-mode point at its mean lengths and rate; or `vllm bench serve --save-result`
    JSON (a file, or a directory of them; give --gpu, --gpus and --precision): one point per run.
    """
    if out and output:
        raise ConfigError("give -o/--out once (--output is its old spelling)")
    output = out or output or "profile.yaml"
    named, engine = engine, engine or "trtllm"
    pts = _measured_points(points, engine, model, gpu, gpus, precision, replicas)
    engines = sorted({p.case.engine for p in pts})
    if len(engines) > 1 and named and Path(named).stem in engines:  # several engines: fit the one named
        pts = [p for p in pts if p.case.engine == Path(named).stem]
        engines = [Path(named).stem]
    if len(engines) > 1:  # one set of efficiency factors fitted to several engines fits none of them
        raise InputFormatError(f"rows measure {len(engines)} engines ({', '.join(engines)}); calibrate fits one "
                               "profile: keep one engine's rows, or name one of them with --engine", file=points,
                               field="engine")
    chosen = [t.strip() for t in tiers.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TIERS]
    if unknown:
        raise ConfigError(f"unknown tier '{unknown[0]}' (one of {', '.join(TIERS)})")
    start = get_profile(engine)
    if name:
        start = start.with_params(name=name)
    t0 = time.perf_counter()
    with progress("calibrate", "fitting", total=max_evals, unit="evals", quiet=quiet) as p:
        fitted = calibrate(pts, start, dataset=points, max_evals=max_evals, tiers=chosen,
                           progress=lambda i, cost: p.update(min(i, max_evals), note=f"cost {cost:.4f}"))
    write_atomic(output, fitted.to_yaml())
    if json_out:
        print_json({"out": output, "profile": fitted.name, "points": len(pts), "fit_error": fitted.fit_error,
                    "coverage": fitted.coverage, "elapsed_s": time.perf_counter() - t0})
        return
    table = Table(title=f"Fit of '{fitted.name}' on {points} ({time.perf_counter() - t0:.0f} s)")
    table.add_column("tier")
    table.add_column("MAPE", justify="right")
    for tier, err in fitted.fit_error.items():
        table.add_row(tier, f"{100 * err:.1f}%")
    console.print(table)
    console.print(f"wrote {output}")


def _measured_points(path: str, engine: str, model, gpu, gpus: int, precision, replicas: int):
    """Points of a measured points CSV, or of a replay's per-request file with the server named by options."""
    from fleetwise.perf.benchjson import bench_points, is_bench_result
    from fleetwise.replay.points import is_replay_file, replay_points

    if is_bench_result(path):  # vllm bench serve --save-result: the file names the model, not the hardware
        missing = [flag for flag, v in (("--gpu", gpu), ("--precision", precision)) if not v]
        if missing:
            raise ConfigError(f"{path} is a vllm bench serve result: name the server it measured with "
                              f"{', '.join(missing)}")
        cat = load_catalog()
        pts = bench_points(path, gpu=cat.gpu(gpu).id, gpus=gpus, precision=cat.precision(precision).id,
                           engine=Path(engine).stem, model=cat.model(model).id if model else None)
        pts = [replace(p, case=replace(p.case, model=cat.model(p.case.model).id)) for p in pts]
        check_points(pts, cat)
        return pts
    if not is_replay_file(path):
        return read_points(path, measured=True)[0]
    missing = [flag for flag, v in (("--model", model), ("--gpu", gpu), ("--precision", precision)) if not v]
    if missing:
        raise ConfigError(f"{path} is a replay file: name the server it measured with {', '.join(missing)}")
    cat = load_catalog()
    pts = replay_points(path, model=cat.model(model).id, gpu=cat.gpu(gpu).id, gpus=gpus,
                        precision=cat.precision(precision).id, engine=Path(engine).stem, replicas=replicas)
    check_points(pts, cat)
    return pts


def validate_command(
    points: Annotated[str, typer.Argument(help="Measured points CSV (engine,model,gpu,...,metric,value).")],
    engine: Annotated[str | None, typer.Option(help="Profile to validate (default: each row's engine).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare the model's predictions with measured points: error per tier (MAPE) and the worst point."""
    pts, _ = read_points(points, measured=True)
    by_engine: dict[str, list] = {}
    for p in pts:
        by_engine.setdefault(engine or p.case.engine, []).append(p)
    rows = []
    for eng, group in by_engine.items():
        try:
            profile = get_profile(eng)
        except UnknownNameError as exc:
            if engine:  # the option, not a row, named it
                raise
            first = group[0]
            raise InputFormatError(exc.message, file=first.file or points, line=first.line, field="engine") from None
        for err in tier_errors(group, predict_points(group, profile)):
            rows.append({"engine": profile.name, "tier": err.tier, "mape": err.mape, "n": err.n,
                         "goal": GOALS.get(err.tier), "worst": err.worst})
    if json_out:
        print_json({"points": points, "tiers": rows})
        return
    table = Table(title=f"Prediction error on {points}")
    for col in ("engine", "tier", "points", "MAPE", "goal", "worst point (predicted vs measured)"):
        table.add_column(col)
    for r in rows:
        goal = f"<= {100 * r['goal']:.0f}%" if r["goal"] else "-"
        table.add_row(r["engine"], r["tier"], str(r["n"]), f"{100 * r['mape']:.1f}%", goal, r["worst"])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("perf")(perf_command)
    app.command("calibrate")(calibrate_command)
    app.command("validate")(validate_command)
