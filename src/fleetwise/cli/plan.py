"""``fleetwise plan``: the cheapest replica configuration that serves a workload within its SLO."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.cli.options import TpotSlo, TtftSlo, accelerator
from fleetwise.cli.output import console, err_console, print_json, split_csv, write_atomic
from fleetwise.cli.tables import Column, fit_table
from fleetwise.errors import ConfigError
from fleetwise.plan.confidence import FILTERS
from fleetwise.plan.search import (
    DEFAULT_BATCH_CAPS,
    DEFAULT_TPS,
    OPERATOR_MAX_LOAD,
    OPERATOR_MAX_QUALITY_DROP_PCT,
    OPERATOR_MIN_REPLICAS,
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
    "usd_per_hour", "usd_per_month", "usd_per_1m_output_tokens", "usd_per_1m_total_tokens", "slo_ttft_ms", "slo_tpot_ms",
    "offer", "cloud", "region", "instance_type", "tier", "verified", "load_per_replica", "survives_one_loss",
    "survives_instance_loss", "quality_drop_pct", "quality_source", "quality_as_of", "confidence", "error_band_pct",
    "error_band_source",
)
_CONFIDENCE_SHORT = {"measured": "measured", "interpolated": "interp", "extrapolated": "extrap"}


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


def _columns(result: PlanResult, many_models: bool) -> list[Column]:
    pct = result.request.slo.percentile
    return [
        Column("#", 0), *([Column("model", 0, "left")] if many_models else []), Column("GPUs", 0, "left"),
        Column("prec", 0, "left"), Column("batch", 5), Column("repl", 0),
        Column("offer", 1, "left"), Column("region", 3, "left"), Column("load", 1), Column("N-1", 3),
        Column("goodput", 4), Column("$/hour", 0), Column("$/1M out", 3), Column(f"TTFT{pct}", 4),
        Column(f"TPOT{pct}", 4), Column("q.drop", 1), Column("conf", 2, "left"), Column("err", 5),
        Column("check", 5),
    ]


def _quality(c: Candidate) -> str:
    return "unknown" if c.quality_drop_pct is None else f"{c.quality_drop_pct:g}%"


def _cells(i: int, c: Candidate, pareto: bool, many_models: bool) -> list[str]:
    mark = ("*" if pareto else "") + ("!" if c.confidence == "extrapolated" else "")
    return [
        f"{i}{mark}", *([c.model] if many_models else []), f"{c.tp}x {c.gpu}", c.precision, str(c.max_batch),
        str(c.replicas), f"{c.instances}x {c.cloud}:{c.instance_type}", c.region, f"{c.load_per_replica:.0%}",
        "ok" if c.survives_one_loss else "no", f"{c.goodput_rps:.1f}", f"{c.usd_per_hour:,.2f}",
        f"{c.usd_per_1m_output_tokens:.3f}", f"{c.slo_ttft_ms:.0f}", f"{c.slo_tpot_ms:.1f}", _quality(c),
        _CONFIDENCE_SHORT.get(c.confidence, c.confidence or "-"),
        "?" if c.error_band_pct is None else f"{c.error_band_pct:.0f}%", "sim" if c.verified else "est",
    ]


def _distinct(rows: list[Candidate]) -> list[Candidate]:
    """Rows that differ in more than the region: one instance type at one price in several regions reads as
    repeated lines in a table (--json and --csv keep every region)."""
    seen: set[tuple] = set()
    out = []
    for c in rows:
        key = (c.model, c.gpu, c.tp, c.precision, c.cloud, c.instance_type, round(c.usd_per_hour, 2), c.replicas)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _table(rows: list[Candidate], result: PlanResult, title: str):
    many_models = len({c.model for c in rows}) > 1
    front = {id(result.candidates[i]) for i in result.pareto}
    cells = [_cells(i, c, id(c) in front, many_models) for i, c in enumerate(rows, 1)]
    return fit_table(console, _columns(result, many_models), cells, title)


def _render(result: PlanResult, view: str, top: int) -> None:
    req = result.request
    wl = req.workload
    console.print(
        f"[bold]Workload[/]: {wl.name}, {wl.rate_rps:g} req/s, input mean {wl.isl.mean:g} tokens"
        f"{f' (p95 {wl.isl.p95:g})' if wl.isl.p95 else ''}, output mean {wl.osl.mean:g}"
        f"{f' (p95 {wl.osl.p95:g})' if wl.osl.p95 else ''}; SLO p{req.slo.percentile} TTFT <= {req.slo.ttft_ms:g} ms,"
        f" TPOT <= {req.slo.tpot_ms:g} ms; tier {req.tier}; engine {req.engine}"
    )
    rows = _distinct(_view_rows(result, view, top)) if view != "batch" else _view_rows(result, view, top)
    title = {"ranking": "Cheapest configurations", "batch": "Batch-cap sweep of the best configuration",
             "precision": "Best configuration per precision", "gpu": "Best configuration per GPU"}[view]
    table, hidden = _table(rows, result, title)
    console.print(table)
    b = result.best
    console.print(
        f"[bold green]Recommendation[/]: {_plural(b.replicas, 'replica')} of {b.model} {b.precision} on {b.gpu} TP{b.tp} "
        f"(batch cap {b.max_batch}) = {b.instances}x {b.instance_type} ({b.cloud} {b.region}), "
        f"${b.usd_per_hour:,.2f}/hour (${b.usd_per_month:,.0f}/month), "
        f"${b.usd_per_1m_output_tokens:.3f} per 1M output tokens."
    )
    console.print(_assessment(b))
    lines = _launch(b, req)
    engine = req.engine if req.engine in lines else "vllm"
    from fleetwise.plan.launch import wrapped

    console.print(f"  launch each replica ({engine}; every engine's line is in --json):", highlight=False)
    console.print(wrapped(lines[engine], min(console.width, 100)), highlight=False, markup=False,
                  soft_wrap=True)
    known = next((c for c in result.candidates if c.confidence in ("measured", "interpolated")), None)
    if b.confidence == "extrapolated" and known is not None:
        console.print(
            f"  cheapest with calibration data ({known.confidence}): {_plural(known.replicas, 'replica')} of {known.model} "
            f"{known.precision} on {known.gpu} TP{known.tp} = {known.instances}x {known.cloud}:{known.instance_type}"
            f", ${known.usd_per_hour:,.2f}/hour, each at {known.load_per_replica:.0%} of goodput "
            f"(--confidence interpolated keeps only such rows)."
        )
    shown = [name for name in _LEGEND if name not in hidden]
    legend = "; ".join(_LEGEND[name].format(req=req) for name in shown)
    console.print(
        f"[dim]{result.evaluated:,} candidate configurations in {result.elapsed_s:.1f} s; "
        f"{len(result.rejected)} rejected (see --json). {legend}."
        + (f" Hidden to fit {console.width} columns: {', '.join(hidden)} (see --json).[/]" if hidden else "[/]")
    )


_LEGEND = {
    "#": "* = on the cost/latency Pareto frontier, ! = extrapolated (no calibration point for the GPU, precision "
         "or model class)",
    "GPUs": "GPUs = GPUs per replica (tensor parallel) x type",
    "repl": "repl = replicas (at least {req.min_replicas})",
    "load": "load = rate / (replicas x goodput), at most {req.max_load:.0%}",
    "N-1": "N-1 = within goodput after losing one replica",
    "goodput": "goodput = req/s per replica within the SLO",
    "q.drop": "q.drop = published accuracy drop vs bf16",
    "conf": "conf = measured / interp(olated) / extrap(olated) by the engine's calibration data",
    "err": "err = error band of the latency model",
    "check": "check: sim = verified by event simulation, est = closed-form estimate",
}


def _assessment(b: Candidate) -> str:
    """One line an operator reads before signing off: load, redundancy, quality, confidence."""
    loss = ("holds the SLO after losing one replica" if b.survives_one_loss
            else "losing one replica overloads the rest" if b.replicas > 1 else "no redundancy")
    if b.survives_one_loss and not b.survives_instance_loss:
        loss += f" but not after losing one of the {_plural(b.instances, 'instance')}"
    quality = ("quality drop unknown (no published figure)" if b.quality_drop_pct is None
               else f"quality drop {b.quality_drop_pct:g}% ({b.quality_source}, {b.quality_as_of})")
    band = "unknown" if b.error_band_pct is None else f"+-{b.error_band_pct:g}%"
    return (f"  each replica at {b.load_per_replica:.0%} of its goodput, {loss}; {quality}; "
            f"prediction {b.confidence or 'not assessed'}, error band {band} ({b.error_band_source}).")


def _to_json(result: PlanResult, view: str, top: int) -> dict:
    req = result.request
    return {
        "workload": {"name": req.workload.name, "rate_rps": req.workload.rate_rps,
                     "isl": asdict(req.workload.isl), "osl": asdict(req.workload.osl)},
        "slo": asdict(req.slo),
        "tier": req.tier,
        "engine": req.engine,
        "min_replicas": req.min_replicas,
        "max_load": req.max_load,
        "max_quality_drop_pct": req.max_quality_drop_pct,
        "confidence_filter": req.confidence,
        "view": view,
        "candidates": [{**{k: getattr(c, k) for k in FIELDS}, "launch": _launch(c, req)}
                       for c in _view_rows(result, view, top)],
        "pareto": [result.candidates[i].offer + " " + result.candidates[i].label for i in result.pareto],
        "rejected": [{"config": r.config, "reason": r.reason} for r in result.rejected],
        "evaluated": result.evaluated,
        "elapsed_s": result.elapsed_s,
    }


def _launch(c: Candidate, req) -> dict[str, str]:
    """One replica's command line per engine (see fleetwise.plan.launch)."""
    from fleetwise.plan.launch import launch_commands, shell_line

    return {engine: shell_line(argv) for engine, argv in launch_commands(c, req).items()}


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


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


def _percentile(value: int) -> int:
    if value not in (90, 95, 99):
        raise ConfigError(f"--percentile must be 90, 95 or 99 (got {value})")
    return value


def plan_command(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Candidate model(s): id, alias or Hugging Face id; repeat or comma-separate.")] = None,
    workload: Annotated[str, typer.Option(help=f"Built-in workload for length distributions and default rate: {', '.join(BUILTIN)}.")] = "chat",
    rate: Annotated[float | None, typer.Option(help="Target request rate, requests/s (default: the workload's).", callback=checks.number(gt=0, le=1e6, why="a million requests a second is beyond any one model's fleet; plan a share of it"))] = None,
    isl: Annotated[float | None, typer.Option(help="Mean input tokens (keeps the workload's p95/mean shape).", callback=checks.positive)] = None,
    osl: Annotated[float | None, typer.Option(help="Mean output tokens (keeps the workload's p95/mean shape).", callback=checks.positive)] = None,
    fixed_lengths: Annotated[bool, typer.Option("--fixed-lengths", help="Every request exactly --isl/--osl tokens.")] = False,
    ttft_ms: TtftSlo = 1000.0,
    tpot_ms: TpotSlo = 50.0,
    percentile: Annotated[int, typer.Option(help="SLO percentile: 90, 95 or 99.", callback=_percentile)] = 95,
    tier: Annotated[str, typer.Option(help="Capacity tier: on_demand, reserved_1y, reserved_3y, spot.")] = "on_demand",
    cloud: Annotated[list[str] | None, typer.Option(help="Only these clouds (aws, gcp, azure, lambda).")] = None,
    region: Annotated[list[str] | None, typer.Option(help="Only these regions.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="Only these GPU types (aliases resolve); TYPE:N (h100:8) also sets --tp N.")] = None,
    precision: Annotated[list[str] | None, typer.Option(help="Only these precisions (default: all).")] = None,
    tp: Annotated[list[str] | None, typer.Option(help="Tensor-parallel degrees to try (default 1,2,4,8).")] = None,
    max_batch: Annotated[list[str] | None, typer.Option("--max-batch", help="Batch caps to try (default 16..1024).")] = None,
    engine: Annotated[str, typer.Option(help="Engine profile: trtllm, vllm, sglang, or a calibrated profile .yaml.")] = "trtllm",
    overhead_pct: Annotated[float, typer.Option("--overhead-pct", help="Networking/storage overhead added to the monthly cost, %.", callback=checks.non_negative)] = 0.0,
    min_replicas: Annotated[int, typer.Option("--min-replicas", help="At least this many replicas (default 2: one replica keeps serving when another is lost; whether the rest still meet the SLO is shown as N-1 / survives_one_loss).", callback=checks.number(ge=1, le=checks.MAX_INSTANCES, why="a fleet larger than that is not planned replica by replica"))] = OPERATOR_MIN_REPLICAS,
    max_load: Annotated[float, typer.Option("--max-load", help="Each replica runs at most at this fraction of its goodput (default 0.8: goodput is where the SLO percentile just holds, so 20% headroom absorbs a 25% burst or model error before latency breaks the SLO); replicas = max(--min-replicas, ceil(rate / (max-load x goodput))).", callback=checks.number(gt=0, le=1, what="fraction of goodput"))] = OPERATOR_MAX_LOAD,
    max_quality_drop: Annotated[float, typer.Option("--max-quality-drop", help="Largest published accuracy drop vs bf16 a precision may have for the model, percentage points (default 1.0). Figures come from the catalog (fleetwise catalog quality); a precision with no published figure for the model is 'unknown' and excluded at any limit. Precisions named with --precision are never excluded for quality.", callback=checks.number(ge=0, le=100, what="accuracy drop in percentage points"))] = OPERATOR_MAX_QUALITY_DROP_PCT,
    confidence: Annotated[str, typer.Option("--confidence", help="Least-known performance prediction to keep: measured (GPU+precision+model class in the engine profile's calibration data), interpolated (each present, not together) or any (also extrapolated rows, marked '!').")] = "any",
    catalog: Annotated[str | None, typer.Option(envvar="FLEETWISE_CATALOG_NAME", help="Catalog: 'seed-scenario' or a directory overlaying the default.")] = None,
    view: Annotated[str, typer.Option(help=f"What to show: {', '.join(VIEWS)}.")] = "ranking",
    top: Annotated[int, typer.Option(help="Rows to show.", callback=checks.at_least_one)] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Also write every ranked candidate to this CSV file.", callback=checks.output_file())] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", hidden=True, help="--out's old name.", callback=checks.output_file())] = None,
) -> None:
    """Find the cheapest replica configuration (GPU, count/TP, precision, batch cap, offer) meeting the SLO.

    With no options it plans llama-3.1-70b for the built-in 'chat' workload (Azure conversation-trace
    lengths) at 20 req/s with p95 TTFT <= 1000 ms and TPOT <= 50 ms on on-demand capacity, with at least 2
    replicas each at most at 80% of its goodput, and only precisions whose published accuracy drop for the
    model is at most 1%. Every row shows that drop and how well the engine profile's calibration data cover
    the GPU, precision and model class (measured / interpolated / extrapolated).
    """
    if view not in VIEWS:
        raise ConfigError(f"unknown view '{view}' (one of {', '.join(VIEWS)})")
    if confidence not in FILTERS:
        raise ConfigError(f"--confidence: unknown value '{confidence}' (one of {', '.join(FILTERS)})")
    if out and csv_path:
        raise ConfigError("give -o/--out once (--csv is its old spelling)")
    csv_path = out or csv_path
    gpus, counts = [], []
    for g in split_csv(gpu):
        name, n = accelerator(g, None)
        gpus.append(name)
        counts += [str(n)] if n else []
    if counts and tp:
        raise ConfigError("--gpu TYPE:N sets the tensor-parallel degree: give it there or with --tp, not both")
    tp = tp or (sorted(set(counts), key=int) if counts else None)
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
        gpus=gpus,
        precisions=split_csv(precision),
        tps=_ints(split_csv(tp), "tp") or DEFAULT_TPS,
        batch_caps=_ints(split_csv(max_batch), "max-batch") or DEFAULT_BATCH_CAPS,
        engine=engine,
        catalog=catalog,
        overhead_pct=overhead_pct,
        min_replicas=min_replicas,
        max_load=max_load,
        max_quality_drop_pct=max_quality_drop,
        confidence=confidence,
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
