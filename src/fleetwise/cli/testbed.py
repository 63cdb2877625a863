"""``fleetwise testbed``: a GPU-free fleet run by the real controller, a trace replayed through it with chaos,
measured side by side with the simulator's prediction of the same run."""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.cli.options import TpotSlo, TraceAlias, TraceArg, TtftSlo, accelerator, input_file
from fleetwise.cli.output import console, print_json
from fleetwise.cli.replay import Compress, Duration, Json, Limit, Multiply, Seed, Start, _trace
from fleetwise.cli.traffic import Fmt, MaxBad
from fleetwise.traffic.load import DEFAULT_MAX_BAD_ROWS


def testbed_cmd(
    ctx: typer.Context, trace: TraceArg = None, trace_alias: TraceAlias = None, fmt: Fmt = "auto", max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    start: Start = None, duration: Duration = None, limit: Limit = None, multiply: Multiply = 1.0, seed: Seed = 0,
    compress: Compress = 10.0,
    model: Annotated[str, typer.Option("--model", "-m", help="Model every worker serves.")] = "llama-3.1-8b",
    gpu: Annotated[str, typer.Option(help="GPU type of a worker.")] = "h100",
    gpus: Annotated[int, typer.Option(help="GPUs per worker (tensor parallel).", callback=checks.at_least_one)] = 1,
    precision: Annotated[str, typer.Option(help="Precision: bf16, fp8, int4, ...")] = "fp8",
    engine: Annotated[str, typer.Option(help="Engine profile: vllm, sglang, trtllm.")] = "vllm",
    offer: Annotated[str | None, typer.Option(help="Instance offer whose prices apply (default: the cheapest "
                                               "on-demand; pick one with a spot price for spot workers).")] = None,
    policy: Annotated[str, typer.Option(help="Controller policy: hybrid, rolling or reactive.")] = "hybrid",
    metrics: Annotated[str, typer.Option(help="prometheus (a real Prometheus scrapes the workers; the default when "
                                              "the prometheus binary is installed), scrape (the controller reads "
                                              "each worker's /metrics; the default otherwise).")] = "auto",
    preemption_rate: Annotated[float, typer.Option(
        "--preemption-rate-per-hour", help="Spot notices per spot worker-hour (AWS format, 120 s notice).",
        callback=checks.number(ge=0, le=60, what="preemption rate"))] = 0.0,
    kill_every: Annotated[float | None, typer.Option(
        "--kill-controller-every", help="SIGKILL the controller about this often (trace seconds; each restart "
        "adopts the fleet).", callback=checks.number(gt=0, what="kill period"))] = None,
    interval: Annotated[float, typer.Option(help="Controller slow loop period, trace seconds.",
                                            callback=checks.number(ge=1, what="interval"))] = 300.0,
    fast_interval: Annotated[float, typer.Option(help="Controller step period, trace seconds.",
                                                 callback=checks.number(ge=0.1, what="fast interval"))] = 10.0,
    cold_start_s: Annotated[float, typer.Option(
        "--cold-start-s", help="Emulated cold start of a worker on top of its process start, trace seconds.",
        callback=checks.number(ge=0, le=3600, what="cold start"))] = 0.0,
    ttft_ms: TtftSlo = 1000.0,
    tpot_ms: TpotSlo = 50.0,
    json_out: Json = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run a trace through emulated workers driven by the real controller, with spot notices and controller
    kills, and print measured vs simulated: cost, TTFT/TPOT, SLO attainment, requests lost, restarts.

    Everything runs on loopback: `fleetwise control --mode active --actuator local` as its own process, its
    `fleetwise emulate` workers (--time-compress = their --time-scale), and the replay routed over the
    backends the controller lists. The simulator runs the same requests, policy and spot notices.
    --json has 'measured' and 'simulated' (simulate's keys), 'gap' and 'chaos'.
    """
    from fleetwise.control.localprom import LocalPrometheus
    from fleetwise.control.testbed import TestbedConfig, run_testbed

    trace = input_file(trace, trace_alias, "TRACE", "--trace", required=True)
    gpu, gpus = accelerator(gpu, gpus, ctx)
    if metrics == "auto":
        metrics = "prometheus" if LocalPrometheus.available() else "scrape"

    config = TestbedConfig(model=model, gpu=gpu, gpus=gpus, precision=precision, engine=engine,
                           offer=offer, time_compress=compress, policy=policy, preemption_rate_per_hour=preemption_rate,
                           kill_controller_every_s=kill_every, ttft_ms=ttft_ms, tpot_ms=tpot_ms,
                           interval_s=interval, fast_interval_s=fast_interval, cold_start_s=cold_start_s,
                           seed=seed, metrics=metrics)
    tr = _trace(trace, start, duration, multiply, limit, seed, fmt=fmt, max_bad_rows=max_bad_rows)
    say = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = run_testbed(tr, config, say)
    if json_out:
        print_json(out)
        return
    _table(out)


def _fmt(x, spec: str = ",.1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _table(out: dict) -> None:
    from rich import box
    from rich.table import Table

    m, s, g, c = out["measured"], out["simulated"], out["gap"], out["chaos"]
    t = Table(box=box.SIMPLE, title=f"testbed: {out['config']['worker']} workers, policy {out['config']['policy']}")
    for col in ("", "measured", "simulated", "gap"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row("cost", f"${_fmt(m['cost_usd'], ',.2f')}", f"${_fmt(s['cost_usd'], ',.2f')}",
              _pct(g.get("cost_usd")))
    for metric in ("ttft_ms", "tpot_ms"):
        for p in ("p50", "p95", "p99"):
            t.add_row(f"{metric[:4].upper()} {p} ms", _fmt(m[metric].get(p)), _fmt(s[metric].get(p)),
                      _pct(g[metric].get(p)))
    t.add_row("SLO attainment", _pct(m["slo_attainment"]), _pct(s["slo_attainment"]), _pct(g.get("slo_attainment")))
    t.add_row("completed", f"{m['completed']:,}", f"{s['completed']:,}", "")
    t.add_row("failed / dropped", f"{m['failed']:,}", f"{s['dropped'] + s['unfinished']:,}", "")
    t.add_row("workers launched", f"{m['instances_launched']:,}", f"{s['instances_launched']:,}", "")
    console.print(t)
    console.print(f"chaos: {c['spot_notices']} spot notices, {c['controller_restarts']} controller restarts, "
                  f"{c['duplicate_launches']} duplicate launches, {c['orphaned_workers']} orphaned workers, "
                  f"{c['lost_requests']} requests lost {c['lost_by_reason'] or ''}")


def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.1%}" if abs(x) < 1 and x != 1.0 else f"{x:.1%}"


def register(app: typer.Typer) -> None:
    app.command("testbed")(testbed_cmd)
