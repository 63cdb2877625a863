"""``fleetwise plan``: the cheapest replica configuration that serves a workload within its SLO."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from fleetwise.cli import checks
from fleetwise.cli.output import console, err_console, print_json, split_csv, write_atomic
from fleetwise.errors import ConfigError
from fleetwise.plan.search import (
    DEFAULT_BATCH_CAPS,
    DEFAULT_TPS,
    SLO,
    Candidate,
    PlanRequest,
    PlanResult,
    plan,
)
from fleetwise.plan.workload import BUILTIN, LengthDist, get_workload

VIEWS = ("ranking", "batch", "precision", "gpu")

FIELDS = (
    "model", "gpu", "num_gpus", "tp", "precision", "max_batch", "goodput_rps", "replicas", "instances",
    "usd_per_hour", "usd_per_month", "usd_per_1m_output_tokens", "usd_per_1m_total_tokens", "p95_ttft_ms", "p95_tpot_ms",
    "offer", "cloud", "region", "instance_type", "tier", "verified",
)


def _group_best(cands: list[Candidate], attr: str) -> list[Candidate]:
    best: dict[object, Candidate] = {}
    for c in cands:  # already cheapest first
        best.setdefault(getattr(c, attr), c)
    return list(best.values())


def _view_rows(result: PlanResult, view: str, top: int) -> list[Candidate]:
    cands = result.candidates
    if view == "precision":
        return _group_best(cands, "precision")
    if view == "gpu":
        return _group_best(cands, "gpu")
    if view == "batch":
        b = result.best
        same = [c for c in result.all_batch_caps if (c.model, c.gpu, c.tp, c.precision, c.offer) ==
                (b.model, b.gpu, b.tp, b.precision, b.offer)]
        return sorted(same, key=lambda c: c.max_batch)
    return cands[:top]


def _table(rows: list[Candidate], result: PlanResult, title: str) -> Table:
    pct = result.request.slo.percentile
    many_models = len({c.model for c in rows}) > 1
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    cols = ["#", *(["model"] if many_models else []), "GPU", "TP", "prec", "batch", "instances", "goodput",
            "$/hour", "$/1M out", f"TTFT{pct}", f"TPOT{pct}", "check"]
    for name in cols:
        table.add_column(name, justify="left" if name in ("model", "GPU", "prec", "instances") else "right")
    front = {id(result.candidates[i]) for i in result.pareto}
    for i, c in enumerate(rows, 1):
        table.add_row(
            str(i) + ("*" if id(c) in front else ""), *([c.model] if many_models else []), c.gpu, str(c.tp),
            c.precision, str(c.max_batch), f"{c.instances}x {c.cloud}:{c.instance_type}", f"{c.goodput_rps:.1f}",
            f"{c.usd_per_hour:,.2f}", f"{c.usd_per_1m_output_tokens:.3f}", f"{c.p95_ttft_ms:.0f}",
            f"{c.p95_tpot_ms:.1f}", "sim" if c.verified else "est",
        )
    return table


def _render(result: PlanResult, view: str, top: int) -> None:
    req = result.request
    wl = req.workload
    console.print(
        f"[bold]Workload[/]: {wl.name}, {wl.rate_rps:g} req/s, input mean {wl.isl.mean:g} tokens"
        f"{f' (p95 {wl.isl.p95:g})' if wl.isl.p95 else ''}, output mean {wl.osl.mean:g}"
        f"{f' (p95 {wl.osl.p95:g})' if wl.osl.p95 else ''}; SLO p{req.slo.percentile} TTFT <= {req.slo.ttft_ms:g} ms,"
        f" TPOT <= {req.slo.tpot_ms:g} ms; tier {req.tier}; engine {req.engine}"
    )
    rows = _view_rows(result, view, top)
    title = {"ranking": "Cheapest configurations", "batch": "Batch-cap sweep of the best configuration",
             "precision": "Best configuration per precision", "gpu": "Best configuration per GPU"}[view]
    console.print(_table(rows, result, title))
    b = result.best
    console.print(
        f"[bold green]Recommendation[/]: {b.replicas} replica(s) of {b.model} {b.precision} on {b.gpu} TP{b.tp} "
        f"(batch cap {b.max_batch}) = {b.instances}x {b.instance_type} ({b.cloud} {b.region}), "
        f"${b.usd_per_hour:,.2f}/hour (${b.usd_per_month:,.0f}/month), "
        f"${b.usd_per_1m_output_tokens:.3f} per 1M output tokens."
    )
    console.print(
        f"[dim]{result.evaluated:,} candidate configurations in {result.elapsed_s:.1f} s; "
        f"{len(result.rejected)} rejected (see --json); * = on the cost/latency Pareto frontier; "
        f"goodput = req/s per replica within SLO; TTFT/TPOT = ms percentiles at the goodput rate; "
        f"check: sim = verified by event simulation, est = closed-form estimate.[/]"
    )


def _to_json(result: PlanResult, view: str, top: int) -> dict:
    req = result.request
    return {
        "workload": {"name": req.workload.name, "rate_rps": req.workload.rate_rps,
                     "isl": asdict(req.workload.isl), "osl": asdict(req.workload.osl)},
        "slo": asdict(req.slo),
        "tier": req.tier,
        "engine": req.engine,
        "view": view,
        "candidates": [{k: getattr(c, k) for k in FIELDS} for c in _view_rows(result, view, top)],
        "pareto": [result.candidates[i].offer + " " + result.candidates[i].label for i in result.pareto],
        "rejected": [{"config": r.config, "reason": r.reason} for r in result.rejected],
        "evaluated": result.evaluated,
        "elapsed_s": result.elapsed_s,
    }


def _to_csv(result: PlanResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for c in result.candidates:
        writer.writerow({k: getattr(c, k) for k in FIELDS})
    return buf.getvalue()


def _ints(values: list[str], name: str) -> list[int]:
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--{name} takes whole numbers") from None
    if any(v < 1 for v in out):
        raise ConfigError(f"--{name} values must be >= 1")
    return out


def _check_tps(req: PlanRequest) -> None:
    """Tensor-parallel degrees larger than every matching instance are skipped; fail if that leaves none."""
    from fleetwise.catalog import load_catalog

    offers = load_catalog(req.catalog).find_offers(clouds=req.clouds, regions=req.regions, gpus=req.gpus)
    most = max((o.gpu_count for o in offers), default=0)
    if offers and min(req.tps) > most:
        raise ConfigError(f"--tp {','.join(map(str, req.tps))}: no matching instance has that many GPUs "
                          f"(the largest has {most})")


def plan_command(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Candidate model(s): id, alias or Hugging Face id; repeat or comma-separate.")] = None,
    workload: Annotated[str, typer.Option(help=f"Built-in workload for length distributions and default rate: {', '.join(BUILTIN)}.")] = "chat",
    rate: Annotated[Optional[float], typer.Option(help="Target request rate, requests/s (default: the workload's).", callback=checks.positive)] = None,
    isl: Annotated[Optional[float], typer.Option(help="Mean input tokens (keeps the workload's p95/mean shape).", callback=checks.positive)] = None,
    osl: Annotated[Optional[float], typer.Option(help="Mean output tokens (keeps the workload's p95/mean shape).", callback=checks.positive)] = None,
    fixed_lengths: Annotated[bool, typer.Option("--fixed-lengths", help="Every request exactly --isl/--osl tokens.")] = False,
    ttft_ms: Annotated[float, typer.Option("--ttft-p95-ms", "--ttft-ms", help="TTFT target at the SLO percentile, ms.", callback=checks.slo_target)] = 1000.0,
    tpot_ms: Annotated[float, typer.Option("--tpot-p95-ms", "--tpot-ms", help="TPOT/ITL target at the SLO percentile, ms.", callback=checks.slo_target)] = 50.0,
    percentile: Annotated[int, typer.Option(help="SLO percentile: 95 or 99.")] = 95,
    tier: Annotated[str, typer.Option(help="Capacity tier: on_demand, reserved_1y, reserved_3y, spot.")] = "on_demand",
    cloud: Annotated[Optional[list[str]], typer.Option(help="Only these clouds (aws, gcp, azure, lambda).")] = None,
    region: Annotated[Optional[list[str]], typer.Option(help="Only these regions.")] = None,
    gpu: Annotated[Optional[list[str]], typer.Option(help="Only these GPU types (aliases resolve).")] = None,
    precision: Annotated[Optional[list[str]], typer.Option(help="Only these precisions (default: all).")] = None,
    tp: Annotated[Optional[list[str]], typer.Option(help="Tensor-parallel degrees to try (default 1,2,4,8).")] = None,
    max_batch: Annotated[Optional[list[str]], typer.Option("--max-batch", help="Batch caps to try (default 16..1024).")] = None,
    engine: Annotated[str, typer.Option(help="Engine profile: trtllm, vllm, sglang, or a calibrated profile .yaml.")] = "trtllm",
    overhead_pct: Annotated[float, typer.Option("--overhead-pct", help="Networking/storage overhead added to the monthly cost, %.", callback=checks.non_negative)] = 0.0,
    catalog: Annotated[Optional[str], typer.Option(envvar="FLEETWISE_CATALOG_NAME", help="Catalog: 'seed-scenario' or a directory overlaying the default.")] = None,
    view: Annotated[str, typer.Option(help=f"What to show: {', '.join(VIEWS)}.")] = "ranking",
    top: Annotated[int, typer.Option(help="Rows to show.", callback=checks.at_least_one)] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    csv_path: Annotated[Optional[str], typer.Option("--csv", help="Also write every ranked candidate to this CSV file.", callback=checks.output_file())] = None,
) -> None:
    """Find the cheapest replica configuration (GPU, count/TP, precision, batch cap, offer) meeting the SLO.

    With no options it plans llama-3.1-70b for the built-in 'chat' workload (Azure conversation-trace
    lengths) at 20 req/s with p95 TTFT <= 1000 ms and TPOT <= 50 ms on on-demand capacity.
    """
    if view not in VIEWS:
        raise ConfigError(f"unknown view '{view}' (one of {', '.join(VIEWS)})")
    wl = get_workload(workload).with_overrides(isl=isl, osl=osl, rate_rps=rate)
    if fixed_lengths:
        wl = type(wl)(wl.name + " (fixed lengths)", LengthDist(wl.isl.mean), LengthDist(wl.osl.mean), wl.rate_rps, wl.source)
    req = PlanRequest(
        models=split_csv(model) or ["llama-3.1-70b"],
        workload=wl,
        slo=SLO(ttft_ms, tpot_ms, percentile),
        tier=tier,
        clouds=split_csv(cloud),
        regions=split_csv(region),
        gpus=split_csv(gpu),
        precisions=split_csv(precision),
        tps=_ints(split_csv(tp), "tp") or DEFAULT_TPS,
        batch_caps=_ints(split_csv(max_batch), "max-batch") or DEFAULT_BATCH_CAPS,
        engine=engine,
        catalog=catalog,
        overhead_pct=overhead_pct,
    )
    if tp:
        _check_tps(req)
    if json_out:
        result = plan(req)
    else:
        with console.status("Searching configurations...") as status:
            result = plan(req, progress=lambda msg: status.update(msg))
    if csv_path:
        write_atomic(csv_path, _to_csv(result))
        err_console.print(f"wrote {len(result.candidates)} candidates to {csv_path}")
    if json_out:
        print_json(_to_json(result, view, top))
    else:
        _render(result, view, top)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
