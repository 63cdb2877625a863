"""``fleetwise simulate`` and ``fleetwise compare``: replay a trace through a simulated fleet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from fleetwise.cli import checks
from fleetwise.cli.options import TraceAlias, accelerator, input_file
from fleetwise.cli.output import console, err_console, print_json, split_csv
from fleetwise.cli.progress import Quiet, progress
from fleetwise.cli.traffic import (
    Compress,
    Fmt,
    InputCol,
    MaxBad,
    Multiply,
    OutputCol,
    TimeCol,
    TimeUnit,
    load_input,
)
from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic.durations import parse_duration
from fleetwise.traffic.load import DEFAULT_MAX_BAD_ROWS

TraceOpt = Annotated[Path | None, typer.Argument(
    metavar="TRACE", show_default=False,
    help="Request trace (Azure, BurstGPT, Mooncake, CSV/Parquet/JSONL); default: 1 h synthetic.")]
CatalogOpt = Annotated[str | None, typer.Option(
    "--catalog", help="Catalog: 'seed-scenario' or a directory overlaying the default.",
    envvar="FLEETWISE_CATALOG_NAME")]
Model = Annotated[str, typer.Option("--model", "-m", help="Model to serve.")]
Gpu = Annotated[str, typer.Option(help="GPU type of the replica.")]
Gpus = Annotated[int, typer.Option("--gpus", help="GPUs per replica (num_gpus/tp data-parallel engines).",
                                   callback=checks.at_least_one)]
Tp = Annotated[int | None, typer.Option(help="Tensor-parallel degree (default: --gpus).",
                                           callback=checks.at_least_one)]
Prec = Annotated[str, typer.Option(help="Precision: bf16, fp8, int4, ...")]
Engine = Annotated[str, typer.Option(help="Engine profile: trtllm, vllm, sglang.")]
OfferOpt = Annotated[str | None, typer.Option("--offer", help="Instance offer id (default: cheapest per replica).")]
Cloud = Annotated[list[str] | None, typer.Option(help="Only offers of these clouds.")]
Region = Annotated[list[str] | None, typer.Option(help="Only offers in these regions.")]
Ttft = Annotated[float, typer.Option("--ttft-ms", "--ttft-p95-ms", help="p95 TTFT target (interactive class), ms.",
                                     callback=checks.slo_target)]
Tpot = Annotated[float, typer.Option("--tpot-ms", "--tpot-p95-ms", help="p95 TPOT target (interactive class), ms.",
                                     callback=checks.slo_target)]
SPOT_FRACTION = checks.number(ge=0, le=1, what="spot fraction")
SpotFrac = Annotated[float, typer.Option(help="Share of instances (or of launches) on spot.", callback=SPOT_FRACTION)]
Reserved = Annotated[int, typer.Option(help="Reserved instances held throughout (billed for the whole run).",
                                       callback=checks.fleet_size)]
Hazard = Annotated[float | None, typer.Option(
    "--preemption-rate-per-hour", help="Spot interruptions per instance-hour (default: the offer's).",
    callback=checks.number(ge=0, what="preemption rate"))]
Replay = Annotated[Path | None, typer.Option(
    "--preemptions", help="Replay notices at these times (one number of seconds per line) instead of sampling.")]
SpotAvail = Annotated[float, typer.Option(help="Probability a spot launch is fulfilled (else on-demand).",
                                          callback=checks.number(ge=0, le=1, what="spot availability"))]
Cold = Annotated[float | None, typer.Option(
    "--cold-start-s", help="Instance boot + model load + engine start (default: 120 s + weights at --load-gbps "
    "+ 60 s).", callback=checks.cold_start)]
LoadBw = Annotated[float, typer.Option("--load-gbps", help="Model load bandwidth, GB/s (for the cold start).",
                                       callback=checks.positive)]
Prio = Annotated[str | None, typer.Option(
    "--priorities", help="Class shares, e.g. 'interactive=0.7,batch=0.3' (realtime, interactive, batch, "
    "background).")]
Router = Annotated[str, typer.Option(help="least-work, round-robin or p2c.")]
DrainOpt = Annotated[str, typer.Option("--drain", help="On a spot notice: drain, migrate or requeue.")]
KvNet = Annotated[float, typer.Option(
    "--kv-transfer-gbps", help="Move a migrating request's KV cache over the network at this many GB/s "
    "(e.g. RDMA); 0: the target re-prefills prompt + output.", callback=checks.non_negative)]
Interval = Annotated[str, typer.Option("--control-interval", help="Policy period.", callback=checks.duration())]
Budget = Annotated[float | None, typer.Option(
    help="Budget policy: the most the instances billed at once may cost, USD per hour (reserved ones included).",
    callback=checks.positive)]
Tail = Annotated[str, typer.Option(help="Keep running this long after the last arrival.",
                                   callback=checks.duration())]
Seed = Annotated[int, typer.Option(help="Seed (spot losses, fallbacks, classes, routing).", callback=checks.seed)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Report = Annotated[str | None, typer.Option(help="Write an HTML report with plots.", metavar="<path>",
                                               callback=checks.output_file(".html"))]
TimelineOpt = Annotated[str | None, typer.Option(help="Write the per-interval timeline as CSV.", metavar="<path>",
                                                    callback=checks.output_file())]


def _requests(trace: Path | None, compress: float, multiply: float, priorities: str | None, ttft: float, tpot: float,
              seed: int, **load_opts):
    from fleetwise.sim.requests import SimRequests, named_class
    from fleetwise.traffic.convert import rate_multiply, time_compress
    from fleetwise.traffic.records import RequestTrace
    from fleetwise.traffic.synth import SyntheticSpec, synthetic_trace

    if trace is None:
        err_console.print("fleetwise: no TRACE given; using a synthetic 1-hour chat trace (about 20 req/s with a "
                          "burst, seed 0)", highlight=False)
        tr = synthetic_trace(SyntheticSpec(days=1 / 24, period_s=60.0, daily_amplitude=0.0, noise_cv=0.2,
                                           bursts_per_day=24.0), seed=0)
    else:
        tr = load_input(trace, **load_opts)
        if not isinstance(tr, RequestTrace):
            raise InputFormatError(f"{trace}: is a rate series; simulate needs requests ('fleetwise traffic convert "
                                   f"{trace} -o trace.csv' samples a trace from it)")
        tr.with_span()
    if compress != 1.0:
        tr = time_compress(tr, compress)
    if multiply != 1.0:
        tr = rate_multiply(tr, multiply, seed=seed)
    if priorities:
        names, shares = _shares(priorities)
        classes = tuple(named_class(n, ttft, tpot) for n in names)
        return SimRequests.from_trace(tr, classes, tuple(shares), seed)
    return SimRequests.from_trace(tr, (named_class("interactive", ttft, tpot),))


def _shares(text: str) -> tuple[list[str], list[float]]:
    from fleetwise.sim.requests import NAMED_CLASSES

    pairs = {}
    for part in split_csv([text]):
        name, _, value = part.partition("=")
        try:
            pairs[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--priorities: '{part}' is not name=share") from None
    bad = [n for n in pairs if n not in NAMED_CLASSES]
    if bad:
        raise ConfigError(f"--priorities: unknown class '{bad[0]}' (one of {', '.join(NAMED_CLASSES)})")
    names = [n for n in NAMED_CLASSES if n in pairs]  # priority order
    total = sum(pairs.values())
    if total <= 0 or any(v < 0 for v in pairs.values()):
        raise ConfigError("--priorities: shares must be >= 0 and not all zero")
    return names, [pairs[n] / total for n in names]


def _check_steps(requests, config) -> None:
    """Fail before simulating if the replay spans more control intervals than the simulator can step through."""
    span = float(requests.arrival_s[-1] - requests.arrival_s[0])
    steps = span / config.control_interval_s
    if steps > checks.MAX_CONTROL_STEPS:
        raise ConfigError(f"the replay spans {span:,.4g} s, {steps:,.4g} control intervals of "
                          f"{config.control_interval_s:g} s; at most {checks.MAX_CONTROL_STEPS:,} (raise "
                          "--control-interval or --time-compress)")


def _replay(path: Path | None) -> tuple[float, ...] | None:
    from fleetwise.sim.strategies import read_preemptions

    return None if path is None else read_preemptions(path)


def _setup(requests, model, gpu, gpus, tp, precision, engine, offer, cloud, region, ttft, tpot, cold, load_gbps,
           hazard, want_spot, catalog=None):
    from fleetwise.sim.setup import fleet_spec

    return fleet_spec(model, gpu, gpus, tp, precision, engine=engine, offer=offer, clouds=split_csv(cloud),
                      regions=split_csv(region), ttft_ms=ttft, tpot_ms=tpot, cold_start_s=cold,
                      load_gb_per_s=load_gbps, hazard_per_hour=hazard, want_spot=want_spot,
                      lengths=(requests.isl, requests.osl), catalog=catalog)


def _check_spot(spec, needs: list[str], gpu: str, gpus: int) -> None:
    """What needs spot instances on an offer without a spot price would run all on-demand: refuse instead."""
    if not needs or spec.offer.price("spot") is not None:
        return
    from fleetwise.sim.setup import spot_clouds

    clouds = spot_clouds(gpu, gpus)
    where = f"a cloud with spot (--cloud {', '.join(clouds[:4])})" if clouds else "another --gpu"
    raise ConfigError(f"{' and '.join(needs)}: needs spot instances, but {spec.offer.id} has no spot price (every "
                      f"spot launch would run on-demand); drop it, or pick {where} or an --offer with a spot price")


def _config(router, drain, interval, spot_avail, hazard, replay, tail, seed, kv_gbps):
    from fleetwise.sim.core import SimConfig

    return SimConfig(router=router, drain=drain, control_interval_s=parse_duration(interval, "--control-interval"),
                     spot_availability=spot_avail, hazard_per_hour=hazard, preemption_times_s=_replay(replay),
                     tail_s=parse_duration(tail, "--tail"), seed=seed, kv_transfer_gb_per_s=kv_gbps)


def _fmt_pcts(p: dict) -> str:
    return "/".join("-" if math.isnan(v) else f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in p.values())


def _table(results, title: str) -> Table:
    """Metrics down, strategies across (fits a narrow terminal and reads side by side)."""
    t = Table(title=title, box=box.SIMPLE_HEAD)
    t.add_column("")
    for r in results:
        t.add_column(r.strategy, justify="right")
    rows = [
        ("requests", lambda r: f"{r.requests:,}"),
        ("completed", lambda r: f"{r.completed:,}"),
        ("migrated/requeued", lambda r: f"{r.migrated:,} / {r.requeued:,}"),
        ("dropped/unfinished", lambda r: f"{r.dropped:,} / {r.unfinished:,}"),
        ("TTFT ms p50/95/99", lambda r: _fmt_pcts(r.ttft_ms)),
        ("TPOT ms p50/95/99", lambda r: _fmt_pcts(r.tpot_ms)),
        ("SLO met", lambda r: f"{r.slo_attainment:.1%}"),
        ("cost", lambda r: f"${r.cost_usd:,.2f}"),
        ("  res/od/spot", lambda r: " / ".join(f"${v:,.0f}" for v in r.cost_by_tier.values())),
        ("$/h mean/peak", lambda r: f"${r.usd_per_hour_mean:,.2f} / ${r.usd_per_hour_peak:,.2f}"),
        ("$/1M tokens", lambda r: f"${r.usd_per_1m_tokens:.3f}"),
        ("goodput req/s", lambda r: f"{r.goodput_rps:,.2f}"),
        ("GPU busy", lambda r: f"{r.gpu_busy_fraction:.0%}"),
        ("spot notices", lambda r: f"{r.preemptions:,}"),
        ("KV transfers", lambda r: f"{r.kv_transfers:,}"),
    ]
    if any(r.budget_usd_per_hour is not None for r in results):
        rows.insert(9, ("budget $/h", lambda r: "-" if r.budget_usd_per_hour is None
                        else f"${r.budget_usd_per_hour:,.2f}"))
    for label, fmt in rows:
        t.add_row(label, *[fmt(r) for r in results])
    return t


def _write_timeline(path: str, result) -> None:
    import csv
    import io

    from fleetwise.atomic import write_atomic
    from fleetwise.sim.fleet import ROLES

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["t_s", *[f"serving_{r}" for r in ROLES], *[f"provisioning_{r}" for r in ROLES], "arrivals_rps",
                "in_flight", "queued", "ttft_p95_ms", "cost_usd"])
    for k in result.timeline:
        w.writerow([f"{k.t:g}", *[k.serving[r] for r in ROLES], *[k.provisioning[r] for r in ROLES],
                    f"{k.arrivals_rps:.4f}", k.in_flight, k.queued, "" if k.ttft_p95_ms != k.ttft_p95_ms else
                    f"{k.ttft_p95_ms:.1f}", f"{k.cost_usd:.4f}"])
    write_atomic(path, buf.getvalue())


def _emit(results, spec, json_out: bool, report: str | None, timeline: str | None, title: str,
          many: bool = False) -> None:
    if timeline:
        _write_timeline(timeline, results[0])
    if report:
        from fleetwise.report.simulation import simulation_report

        simulation_report(report, results, title=title, notes=spec.describe())
    if json_out:
        out = [r.to_dict() for r in results]
        print_json({"fleet": spec.describe(), "strategies": out} if many else out[0])
        return
    console.print(_table(results, title))
    for r in results:
        launched = ", ".join(f"{n} {tier}" for tier, n in r.instances_launched.items() if n)
        extra = f"; {r.preemptions} spot notices, {r.spot_fallbacks} fallbacks to on-demand" if r.preemptions else ""
        drops = "; dropped: " + ", ".join(f"{n} {why}" for why, n in r.dropped_by_reason.items()) if r.dropped else ""
        console.print(f"{r.strategy}: {launched} instances over {r.duration_s / 60:,.0f} min{extra}{drops}; "
                      f"{r.requests / max(r.wall_s, 1e-9):,.0f} simulated req/s", highlight=False)
        if r.budget_usd_per_hour is not None:
            console.print(f"  budget ${r.budget_usd_per_hour:,.2f}/h: spent ${r.usd_per_hour_mean:,.2f}/h on "
                          f"average, ${r.usd_per_hour_peak:,.2f}/h at the peak", highlight=False)
        if len(r.by_class) > 1:
            for c in r.by_class:
                console.print(f"  {c.name}: {c.requests:,} requests, TTFT p95 {c.ttft_ms['p95']:,.0f} ms, TPOT p95 "
                              f"{c.tpot_ms['p95']:.1f} ms, SLO met {c.slo_attainment:.1%}", highlight=False)
    if report:
        err_console.print(f"fleetwise: wrote {report}", highlight=False)


def simulate_cmd(
    ctx: typer.Context, trace: TraceOpt = None, trace_alias: TraceAlias = None, fmt: Fmt = "auto", time_col: TimeCol = None, input_col: InputCol = None,
    output_col: OutputCol = None, time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    model: Model = "llama-3.1-70b", gpu: Gpu = "h100-sxm", gpus: Gpus = 4, tp: Tp = None, precision: Prec = "fp8",
    engine: Engine = "trtllm", offer: OfferOpt = None, cloud: Cloud = None, region: Region = None,
    replicas: Annotated[int | None, typer.Option(help="Fixed fleet of this many replicas (rounded up to whole "
                                                         "instances).", callback=checks.replicas)] = None,
    schedule: Annotated[Path | None, typer.Option(help="Static schedule: CSV time_s,reserved,on_demand,spot or "
                                                          "'fleetwise optimize --json' output.")] = None,
    policy: Annotated[str | None, typer.Option(help="static-peak, static-spot, reactive, reactive-spot, budget "
                                                       "or rolling.")] = None,
    spot_fraction: Annotated[float | None, typer.Option(
        help="Share of instances (--replicas; default 0) or of launches (spot policies; default 0.5) on spot.",
        callback=SPOT_FRACTION)] = None,
    reserved: Reserved = 0, hazard: Hazard = None, preemptions: Replay = None,
    spot_availability: SpotAvail = 0.9, cold_start_s: Cold = None, load_gbps: LoadBw = 1.0,
    ttft_ms: Ttft = 1000.0, tpot_ms: Tpot = 50.0, priorities: Prio = None, router: Router = "least-work",
    drain: DrainOpt = "drain", kv_gbps: KvNet = 0.0, control_interval: Interval = "60s",
    budget_usd_per_hour: Budget = None,
    compress: Compress = 1.0, multiply: Multiply = 1.0, tail: Tail = "30min", seed: Seed = 0,
    catalog: CatalogOpt = None,
    json_out: Json = False, report: Report = None, timeline: TimelineOpt = None, quiet: Quiet = False,
) -> None:
    """Replay a trace through a simulated fleet: cost, TTFT/TPOT per class, SLO attainment, preemptions.

    The fleet is one instance type (the cheapest offer per replica unless --offer), driven by --replicas N (a
    fixed fleet), --schedule FILE or --policy NAME; with none of them, static-peak (a fixed on-demand fleet
    sized by the perf model for the trace's busiest five minutes). Spot instances get a 2-minute notice at
    the offer's interruption rate; --drain says what happens to their requests. Every request ends
    completed, dropped (with a reason) or unfinished.
    """
    from fleetwise.sim.run import simulate_fleet
    from fleetwise.sim.strategies import STRATEGIES, fleet_policy, read_schedule

    trace = input_file(trace, trace_alias, "TRACE", "--trace")
    gpu, gpus = accelerator(gpu, gpus, ctx)

    if policy is not None and policy not in STRATEGIES:
        raise ConfigError(f"unknown --policy '{policy}' (one of {', '.join(STRATEGIES)})")
    if policy == "budget" and budget_usd_per_hour is None:
        raise ConfigError("--policy budget needs --budget-usd-per-hour")
    if budget_usd_per_hour is not None and policy != "budget":  # silently unbudgeted is worse than an error
        raise ConfigError("--budget-usd-per-hour applies to --policy budget only")
    given = [n for n, v in (("--replicas", replicas), ("--schedule", schedule), ("--policy", policy)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give one of --replicas, --schedule, --policy (got {' and '.join(given)})")
    config = _config(router, drain, control_interval, spot_availability, hazard, preemptions, tail, seed, kv_gbps)
    sched = read_schedule(schedule) if schedule is not None else None
    reqs = _requests(trace, compress, multiply, priorities, ttft_ms, tpot_ms, seed, fmt=fmt, time_col=time_col,
                     input_col=input_col, output_col=output_col, time_unit=time_unit, max_bad_rows=max_bad_rows)
    _check_steps(reqs, config)
    spot_wanted_by_schedule = sched is not None and any(row.get("spot", 0) for row in sched.counts)
    want_spot = bool(spot_fraction) or "spot" in (policy or "") or policy == "rolling" or preemptions is not None \
        or spot_wanted_by_schedule
    spec = _setup(reqs, model, gpu, gpus, tp, precision, engine, offer, cloud, region, ttft_ms, tpot_ms,
                  cold_start_s, load_gbps, hazard, want_spot, catalog)
    needs = [n for n, v in ((f"--policy {policy}", "spot" in (policy or "")), ("--spot-fraction", spot_fraction),
                            ("--preemptions", preemptions), ("--schedule (spot rows)", spot_wanted_by_schedule)) if v]
    _check_spot(spec, needs, gpu, gpus)
    pol = fleet_policy(reqs, spec, replicas=replicas, schedule=schedule, policy=policy, spot_fraction=spot_fraction,
                       reserved=reserved, budget_usd_per_hour=budget_usd_per_hour)
    err_console.print(f"fleetwise: {len(reqs):,} requests over {reqs.arrival_s[-1] / 60:,.1f} min on "
                      f"{spec.describe()}", highlight=False)
    n = len(reqs)
    with progress("simulate", f"simulating {pol.name}", total=n, unit="requests", quiet=quiet) as p:
        result = simulate_fleet(reqs, spec, pol, config, lambda f: p.update(f * n))
    _emit([result], spec, json_out, report, timeline, f"fleetwise simulate: {pol.name}")


def compare_cmd(
    ctx: typer.Context, trace: TraceOpt = None, trace_alias: TraceAlias = None, fmt: Fmt = "auto", time_col: TimeCol = None, input_col: InputCol = None,
    output_col: OutputCol = None, time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    strategies: Annotated[str, typer.Option(help="Comma-separated: static-peak, static-spot, reactive, "
                                                 "reactive-spot, budget, rolling.")] = "static-peak,reactive,rolling",
    model: Model = "llama-3.1-70b", gpu: Gpu = "h100-sxm", gpus: Gpus = 4, tp: Tp = None, precision: Prec = "fp8",
    engine: Engine = "trtllm", offer: OfferOpt = None, cloud: Cloud = None, region: Region = None,
    spot_fraction: SpotFrac = 0.5, reserved: Reserved = 0, hazard: Hazard = None, preemptions: Replay = None,
    spot_availability: SpotAvail = 0.9, cold_start_s: Cold = None, load_gbps: LoadBw = 1.0,
    ttft_ms: Ttft = 1000.0, tpot_ms: Tpot = 50.0, priorities: Prio = None, router: Router = "least-work",
    drain: DrainOpt = "drain", kv_gbps: KvNet = 0.0, control_interval: Interval = "60s",
    budget_usd_per_hour: Budget = None,
    compress: Compress = 1.0, multiply: Multiply = 1.0, tail: Tail = "30min", seed: Seed = 0,
    catalog: CatalogOpt = None,
    json_out: Json = False, report: Report = None, quiet: Quiet = False,
) -> None:
    """Run several strategies on the same trace, fleet and seed; print them side by side.

    Dynamic strategies start from a warm fleet sized for the trace's first five minutes; static-peak and
    static-spot are sized for its busiest five minutes (in hindsight, as a peak-provisioned fleet is).
    """
    from fleetwise.sim.strategies import STRATEGIES, compare_strategies

    trace = input_file(trace, trace_alias, "TRACE", "--trace")
    gpu, gpus = accelerator(gpu, gpus, ctx)
    names = split_csv([strategies])
    if not names:
        raise ConfigError("--strategies needs at least one strategy")
    bad = [n for n in names if n not in STRATEGIES]
    if bad:
        raise ConfigError(f"unknown strategy '{bad[0]}' (one of {', '.join(STRATEGIES)})")
    if "budget" in names and budget_usd_per_hour is None:
        raise ConfigError("the budget strategy needs --budget-usd-per-hour")
    if budget_usd_per_hour is not None and "budget" not in names:
        raise ConfigError("--budget-usd-per-hour applies to the budget strategy only (add it to --strategies)")
    config = _config(router, drain, control_interval, spot_availability, hazard, preemptions, tail, seed, kv_gbps)
    reqs = _requests(trace, compress, multiply, priorities, ttft_ms, tpot_ms, seed, fmt=fmt, time_col=time_col,
                     input_col=input_col, output_col=output_col, time_unit=time_unit, max_bad_rows=max_bad_rows)
    _check_steps(reqs, config)
    want_spot = any("spot" in n or n == "rolling" for n in names)
    spec = _setup(reqs, model, gpu, gpus, tp, precision, engine, offer, cloud, region, ttft_ms, tpot_ms,
                  cold_start_s, load_gbps, hazard, want_spot, catalog)
    _check_spot(spec, [n for n in names if "spot" in n], gpu, gpus)
    err_console.print(f"fleetwise: {len(reqs):,} requests over {reqs.arrival_s[-1] / 60:,.1f} min on "
                      f"{spec.describe()}", highlight=False)
    n = len(reqs)
    with progress("compare", "simulating", total=n * len(names), unit="requests", quiet=quiet) as p:
        order: dict[str, int] = {}  # the strategies run one after another, in this order

        def update(name: str, f: float) -> None:
            k = order.setdefault(name, len(order))
            p.update((k + f) * n, description=f"simulating {name} ({k + 1}/{len(names)})")

        results = compare_strategies(reqs, spec, names, config, update, spot_fraction=spot_fraction,
                                     reserved=reserved, budget_usd_per_hour=budget_usd_per_hour)
    _emit(results, spec, json_out, report, None, "fleetwise compare", many=True)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("compare")(compare_cmd)
