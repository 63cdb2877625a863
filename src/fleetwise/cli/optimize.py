"""``fleetwise optimize``: reserved / spot / on-demand allocation over time, and its evaluation."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Self

import numpy as np
import typer
from rich import box
from rich.table import Table

from fleetwise.allocate.evidence import evidence_rule, history_text
from fleetwise.allocate.optimize import EVALUATE_MODES, optimize
from fleetwise.cli import checks
from fleetwise.cli.options import TpotSlo, TtftSlo, input_file
from fleetwise.cli.output import console, err_console, print_json, split_csv
from fleetwise.cli.progress import Quiet, progress
from fleetwise.cli.traffic import Fmt, TimeCol, ValueCol, series_input
from fleetwise.cost import HOURS_PER_MONTH
from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.sim.sampling import DEFAULT_REQUESTS_PER_DAY, DEFAULT_WINDOWS_PER_DAY, MAX_REQUESTS_PER_DAY


def _scenario(json_out: bool) -> None:
    from fleetwise.allocate.scenario import seed_scenario

    rows = seed_scenario()
    if json_out:
        print_json({"scenario": "seed", "rows": [r.__dict__ for r in rows]})
        return
    t = Table(title="Llama-70B on 4x(8xH100) nodes: peak 8 h/day needs 4 nodes, off-peak 2 (seed-scenario catalog)",
              box=box.SIMPLE_HEAD)
    for c in ("strategy", "reserved", "on-demand pk/off", "spot pk/off", "monthly", "savings", "published"):
        t.add_column(c, justify="left" if c == "strategy" else "right")
    for r in rows:
        t.add_row(r.strategy, str(r.reserved), r.on_demand, r.spot, f"${r.monthly_usd:,.0f}",
                  f"{r.savings_vs_on_demand:.0%}", f"${r.published_usd:,}")
    console.print(t)
    for r in rows:
        console.print(f"{r.strategy}: {r.verdict}", highlight=False)
    console.print("Monthly = 730 h at the catalog prices; spot nodes count at 1/(1 + 5%/h x (cold start - 2 min "
                  "notice)) of a node, so covering 2 nodes with spot alone takes 3.", highlight=False)


def _evaluate_mode(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    if value not in EVALUATE_MODES:
        raise ConfigError(f"{checks.option_name(param)} must be one of {', '.join(EVALUATE_MODES)} (got '{value}')")
    return value


def _reservations(evidence) -> list[dict]:
    """Each reservation to buy with its evidence (offer, term, count and break_even_utilization first)."""
    return [e.to_dict() for e in evidence]


def _schedule_json(schedule, period_h: float, demand) -> dict:
    return {"period_h": period_h, "offers": [o.id for o in schedule.offers], "spot": schedule.spot.tolist(),
            "on_demand": schedule.on_demand.tolist(), "demand_rps": list(map(float, demand))}


def _baseline_json(b, fleetwise_usd: float | None = None) -> dict:
    """One baseline row; the same keys whether or not it applies (figures null when it does not)."""
    ok = b.applicable
    row = {"name": b.name, "applicable": ok, "reason": b.reason, "cost_usd": b.cost_usd if ok else None,
           "unmet_demand_fraction": b.unmet_demand_fraction if ok else None}
    if fleetwise_usd is not None:
        row["savings_fraction"] = 1 - fleetwise_usd / b.cost_usd if ok and b.cost_usd else None
    return row


def _tier_table(title: str, evaluations, hindsight_usd: float) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD)
    for c in ("strategy", "cost", "vs hindsight", "unmet demand"):
        t.add_column(c, justify="left" if c == "strategy" else "right")
    for e in evaluations:
        if not e.applicable:
            t.add_row(e.name, f"n/a — {e.reason}", "-", "-")
            continue
        ratio = f"{e.cost_usd / hindsight_usd:.2f}x" if hindsight_usd else "-"
        t.add_row(e.name, f"${e.cost_usd:,.0f}", ratio, f"{e.unmet_demand_fraction:.2%}")
    return t


def optimize_cmd(
    series_arg: Annotated[Path | None, typer.Argument(
        metavar="SERIES", show_default=False,
        help="Demand: a rate series or a request trace (default: the built-in synthetic workload).")] = None,
    scenario: Annotated[str | None, typer.Option(help="Reproduce a named example: 'seed'.")] = None,
    series_file: Annotated[Path | None, typer.Option("--series", hidden=True, help="SERIES's old name.")
                           ] = None,
    time_col: TimeCol = None, value_col: ValueCol = None, fmt: Fmt = "auto",
    freq: Annotated[str | None, typer.Option(
        help="Period length (default: the series' own bins with --train-days, else 1h).",
        callback=checks.duration())] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to serve.")] = "llama-3.1-8b",
    isl: Annotated[float, typer.Option(help="Mean input tokens.", callback=checks.positive)] = 1155.0,
    osl: Annotated[float, typer.Option(help="Mean output tokens.", callback=checks.positive)] = 211.0,
    ttft_ms: TtftSlo = 1000.0,
    tpot_ms: TpotSlo = 50.0,
    catalog: Annotated[str | None, typer.Option(help="Catalog name or directory.")] = None,
    cloud: Annotated[list[str] | None, typer.Option(help="Only these clouds.")] = None,
    region: Annotated[list[str] | None, typer.Option(help="Only these regions.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="Only these GPU types.")] = None,
    offers_top: Annotated[int, typer.Option("--offers", help=(
        "How many of the cheapest offers (per req/s, best tier) to consider; if none of them is smaller than a "
        "quarter of the mean rate, the cheapest such offer per tier joins them so capacity can follow demand "
        "in small steps."), callback=checks.at_least_one)] = 6,
    quantile: Annotated[float, typer.Option(help="Demand quantile to provision for.",
                                            callback=checks.number(gt=0, lt=1))] = 0.95,
    horizon: Annotated[str, typer.Option(help="Planning horizon (without --train-days; at most a year).",
                                         callback=checks.horizon)] = "30d",
    train_days: Annotated[float | None, typer.Option(help="Fit on this many days, then operate...",
                                                        callback=checks.days)] = None,
    eval_days: Annotated[float | None, typer.Option(help="...over this many days against the actual series.",
                                                       callback=checks.days)] = None,
    max_spot_share: Annotated[float, typer.Option(help="Spot's largest share of capacity.", callback=checks.number(
        ge=0, le=1, what="spot share cap"))] = 0.7,
    min_nonspot_share: Annotated[float, typer.Option(help="Share of demand reserved + on-demand must cover.",
                                                     callback=checks.number(ge=0, le=1, what="non-spot share floor"))
                                 ] = 0.3,
    cold_start_s: Annotated[float | None, typer.Option(
        help="Instance boot + model load + engine start, seconds (default: 120 s boot + weights at 1 GB/s + "
             "60 s engine start, for the model and precision chosen).", callback=checks.cold_start)] = None,
    up: Annotated[int, typer.Option(help="Rolling damping: most instances added per offer and step.",
                                    callback=checks.non_negative)] = 2,
    down: Annotated[int, typer.Option(help="Rolling damping: most instances removed per offer and step.",
                                      callback=checks.non_negative)] = 1,
    spot_cap: Annotated[int | None, typer.Option(help="Most spot instances of any one offer (pool size).",
                                                    callback=checks.non_negative)] = None,
    on_demand_cap: Annotated[int | None, typer.Option(help="Most on-demand instances of any one offer (quota).",
                                                         callback=checks.non_negative)] = None,
    reserved_cap: Annotated[int | None, typer.Option(help="Most reserved instances of any one offer and term.",
                                                        callback=checks.non_negative)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the spot-interruption draws (and of --evaluate requests).",
                                      callback=checks.seed)] = 0,
    evaluate: Annotated[str, typer.Option(help=(
        "With --train-days/--eval-days: 'fluid' scores each schedule by capacity against demand per period; "
        "'requests' also replays every strategy's operated schedule through the fleet simulator on requests "
        "drawn from the series, per day: --evaluate-windows periods drawn in proportion to demand, Poisson "
        "arrivals at their rate, the --isl/--osl lognormal lengths, requests routed to offers by their share "
        "of the serving capacity, the fleet warm and empty at each window's start (its first 20 s, at most "
        "half of it, not counted; the same requests for every strategy, from --seed). Reports SLO "
        "attainment, p95 TTFT/TPOT and requests within SLO per dollar per day."),
        callback=_evaluate_mode)] = "fluid",
    evaluate_requests: Annotated[int, typer.Option(help="--evaluate requests: most simulated requests per "
                                                   "strategy and day (windows shorten at high rates).",
                                                   callback=checks.number(ge=100, le=MAX_REQUESTS_PER_DAY, why=(
                                                       "a million per strategy-day already takes minutes")))
                                 ] = DEFAULT_REQUESTS_PER_DAY,
    evaluate_windows: Annotated[int, typer.Option(help="--evaluate requests: periods simulated per day.",
                                                  callback=checks.number(ge=1, le=48, why=(
                                                      "more, shorter windows are mostly warm-up")))
                                ] = DEFAULT_WINDOWS_PER_DAY,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Quiet = False,
    report: Annotated[str | None, typer.Option(help="Write an HTML report.", metavar="<path>",
                                                  callback=checks.output_file(".html"))] = None,
) -> None:
    """Reserved / spot / on-demand counts over time (MILP), reservations to buy, and savings vs baselines."""
    series_file = input_file(series_arg, series_file, "SERIES", "--series")
    if scenario is not None:
        if scenario != "seed":
            raise ConfigError(f"unknown scenario '{scenario}' (available: seed)")
        _scenario(json_out)
        return
    if (train_days is None) != (eval_days is None):
        raise ConfigError("--train-days and --eval-days go together")
    evaluate_mode = train_days is not None
    if evaluate == "requests" and not evaluate_mode:
        raise ConfigError("--evaluate requests replays the operated schedule: it needs --train-days and --eval-days")
    if evaluate == "requests" and catalog is not None:
        raise ConfigError("--evaluate requests simulates the offers of the built-in catalog (or FLEETWISE_CATALOG); "
                          "it cannot take --catalog")
    if evaluate_windows > evaluate_requests:
        raise ConfigError(f"--evaluate-windows {evaluate_windows} is more than --evaluate-requests "
                          f"{evaluate_requests}: each window needs a request")
    series = series_input(series_file, freq if (freq or evaluate_mode) else "1h", what="SERIES",
                          trace_bin_s=600.0, fmt=fmt, time_col=time_col, value_col=value_col)
    if not np.isfinite(series.values).any():  # the library says so too, without the file
        raise InputFormatError("no known demand values (every bin is missing)",
                               file=str(series_file) if series_file else None)
    steps = None if evaluate_mode else checks.horizon_steps(horizon, series.period_s)
    with _Stages(quiet) as stages:
        result = optimize(
            series, model=model, isl=isl, osl=osl, ttft_ms=ttft_ms, tpot_ms=tpot_ms, catalog=catalog,
            clouds=split_csv(cloud), regions=split_csv(region), gpus=split_csv(gpu), offers_top=offers_top,
            spot_cap=spot_cap, on_demand_cap=on_demand_cap, reserved_cap=reserved_cap, cold_start_s=cold_start_s,
            max_spot_share=max_spot_share, min_nonspot_share=min_nonspot_share, quantile=quantile, up=up,
            down=down, horizon_steps=steps, train_days=train_days, eval_days=eval_days, evaluate=evaluate,
            requests_per_day=evaluate_requests, windows_per_day=evaluate_windows, seed=seed, progress=stages,
            on_cold_start=stages.cold_start)
    if result.comparison is not None:
        _emit_comparison(result.comparison, json_out, report, result.requests)
    else:
        _emit_plan(result.forward, json_out, report)


STAGES = {"offers": ("planning replica configurations and offers", ""),
          "forward": ("forecasting and allocating", ""),
          "operate": ("forecasting, allocating and operating", "rolling steps"),
          "replay": ("replaying schedules request by request", "strategies")}
"""Each phase of :func:`fleetwise.allocate.optimize.optimize` as a progress block: its description and unit."""


class _Stages:
    """The library's progress callback as one ``progress`` block per phase, and the cold-start note between
    planning and allocating."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.phase: str | None = None
        self.block: ExitStack | None = None
        self.tracker = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self._close(*exc)

    def __call__(self, phase: str, done: float, total: float | None) -> None:
        if phase != self.phase:
            self._close(None, None, None)
            description, unit = STAGES[phase]
            self.block = ExitStack()
            self.tracker = self.block.enter_context(progress("optimize", description, unit=unit, quiet=self.quiet))
            self.phase = phase
        if total is not None:
            self.tracker.update(done, total=total)

    def cold_start(self, seconds: float) -> None:
        self._close(None, None, None)
        err_console.print(f"fleetwise: cold start {seconds:.0f} s (boot + weights at 1 GB/s + engine start; "
                          "--cold-start-s to override)", highlight=False)

    def _close(self, *exc) -> None:
        block, self.block, self.phase, self.tracker = self.block, None, None, None
        if block is not None:
            block.__exit__(*exc)


def _emit_plan(fp, json_out: bool, report) -> None:
    a = fp.allocation
    out = {"reservations": _reservations(fp.evidence), "reservation_evidence_rule": evidence_rule(),
           "cost": {"total_usd": a.total_usd, "by_tier": a.cost_usd, "monthly_by_tier": a.monthly_usd()},
           "gap": a.gap, "solve_s": a.solve_s, "forecast_method": fp.method,
           "baselines": [_baseline_json(b) for b in fp.baselines],
           "schedule": _schedule_json(a, a.period_h, a.demand_rps)}
    if report:
        from fleetwise.report.allocation import allocation_report

        allocation_report(report, a, None)
    if json_out:
        print_json(out)
        return
    _print_offers_and_reservations(a, fp.evidence)
    if not np.any(a.demand_rps > 0):
        console.print("The forecast demand is zero throughout: nothing to provision.", highlight=False)
    console.print(f"Planned on the forecast ({fp.method}) for {a.horizon_h:,.0f} h: total ${a.total_usd:,.0f} "
                  f"(monthly: " + ", ".join(f"{k} ${v:,.0f}" for k, v in a.monthly_usd().items()) +
                  f"); MILP gap <= {a.gap:.2%}, {a.solve_s:.1f} s")
    for b in fp.baselines:
        if not b.applicable:
            console.print(f"  vs {b.name}: n/a — {b.reason}", highlight=False)
            continue
        console.print(f"  vs {b.name}: ${b.cost_usd:,.0f}, unmet {b.unmet_demand_fraction:.2%} of the forecast "
                      + (f"(fleetwise saves {1 - a.total_usd / b.cost_usd:.0%})" if b.cost_usd else ""),
                      highlight=False)


def _print_offers_and_reservations(a, evidence) -> None:
    from fleetwise.allocate.offers import RESERVED_TERMS
    from fleetwise.cli.tables import Column, fit_table

    fmt = lambda v: f"${v:.2f}" if v is not None else "-"
    columns = [Column("offer", 0, "left"), Column("req/s each", 0), Column("on-demand", 0), Column("spot", 0),
               Column("1y", 1), Column("3y", 1)]
    rows = [[o.id, f"{o.capacity_rps:.1f}", fmt(o.price("on_demand")), fmt(o.price("spot")),
             fmt(o.price("reserved_1y")), fmt(o.price("reserved_3y"))] for o in a.offers]
    t, dropped = fit_table(console, columns, rows, title="Offers considered")  # whole ids, never cut short
    console.print(t)
    if dropped:
        console.print(f"(left out to fit {console.width} columns: {', '.join(dropped)} reserved prices; see --json)")
    if evidence:
        _print_evidence(evidence)
    elif not any(o.price(t) is not None for o in a.offers for t in RESERVED_TERMS):
        console.print("No reservations: none of the offers has a reserved price (spot and on-demand only).")
    else:
        console.print("No reservations: demand is not steady enough to pay for a commitment.")


def _pct(v: float | None) -> str:
    return f"{v:.0%}" if v is not None else "-"


def _print_evidence(evidence) -> None:
    history = evidence[0].history_days  # one series behind every reservation
    t = Table(title=f"Reservations to buy, on {history_text(history)} of demand history", box=box.SIMPLE_HEAD)
    t.add_column("offer", no_wrap=True)
    for c in ("n", "term", "break-even", "last used", "days above", "evidence"):
        wide = " " not in c  # two-word headers wrap so that an 80-column terminal fits every column
        t.add_column(c, justify="left" if c == "evidence" else "right", min_width=len(c) if wide else None,
                     max_width=None if wide else 6)
    for e in evidence:
        t.add_row(e.offer, str(e.count), e.term.removeprefix("reserved_"), _pct(e.break_even_utilization),
                  _pct(e.last_instance_utilization), _pct(e.days_above_break_even), "THIN" if e.thin else "ok")
    console.print(t)
    for e in evidence:
        for w in e.warnings:
            console.print(f"warning: {e.count} x {e.offer} {e.term}: {w}", highlight=False)
    console.print(f"(Evidence: 'last used' is the mean use of the last reserved instance over the history, "
                  f"'days above' the share of days it was used at or above break-even; {evidence_rule()}.)",
                  highlight=False)


def _emit_comparison(cmp, json_out: bool, report, requests=None) -> None:
    f, h = cmp.fleetwise, cmp.hindsight
    plan = cmp.reservation_plan
    out = {
        "reservations": _reservations(cmp.evidence),
        "reservation_evidence_rule": evidence_rule(),
        "cost": {"total_usd": f.cost_usd, "by_tier": f.cost_by_tier},
        "evaluation": {
            "cost_usd": f.cost_usd, "unmet_demand_fraction": f.unmet_demand_fraction,
            "hindsight_cost_usd": h.cost_usd, "hindsight_lower_bound_usd": cmp.hindsight_plan.lower_bound_usd,
            "ratio_to_hindsight": cmp.ratio_to_hindsight,
            "baselines": [_baseline_json(b, f.cost_usd) for b in cmp.baselines],
            "rolling_step_ms": {"median": cmp.step_ms[0], "max": cmp.step_ms[1]},
            "actions": len(cmp.actions),
        },
        "schedule": _schedule_json(cmp.schedules[cmp.fleetwise.name], cmp.period_h, cmp.demand_rps),
    }
    if requests is not None:
        out["evaluation"]["requests"] = requests.to_dict()
    horizon_h = cmp.period_h * len(cmp.demand_rps)
    out["cost"]["monthly_by_tier"] = {k: v * HOURS_PER_MONTH / horizon_h for k, v in f.cost_by_tier.items()}
    if report:
        from fleetwise.report.allocation import allocation_report

        allocation_report(report, plan, cmp, requests)
    if json_out:
        print_json(out)
        return
    _print_offers_and_reservations(plan, cmp.evidence)
    if not np.any(cmp.demand_rps > 0):
        console.print("The actual demand is zero throughout the evaluated window: nothing to provision (the "
                      "hindsight optimum costs $0).", highlight=False)
    console.print(_tier_table(f"Operating {len(cmp.demand_rps) * cmp.period_h / 24:.1f} days against the actual "
                              "demand", (f, h, *cmp.baselines), h.cost_usd))
    console.print(f"Rolling optimizer: {len(cmp.actions)} scaling actions, step {cmp.step_ms[0]:.1f} ms median / "
                  f"{cmp.step_ms[1]:.0f} ms max. Hindsight optimum found within {cmp.hindsight_plan.gap:.1%} of "
                  "its lower bound.", highlight=False)
    if requests is not None:
        _print_requests(requests)


def _cell(v, spec: str) -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, spec)


def _short(name: str) -> str:
    """A strategy's name without its parenthesized detail (the tier table above gives it in full)."""
    return name.split(" (")[0]


def _print_requests(ev) -> None:
    """--evaluate requests: each strategy request by request next to its fluid unmet demand, then per day."""
    from fleetwise.cli.tables import Column, fit_table

    cols = [Column("strategy", 0, "left"), Column("cost", 1), Column("unmet", 0), Column("SLO met", 0),
            Column("TTFT p95", 2), Column("TPOT p95", 2), Column("in SLO/$", 0), Column("simulated", 3)]
    rows = []
    for s in ev.strategies:
        if not s.applicable:
            rows.append([_short(s.name), "n/a", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append([_short(s.name), f"${s.cost_usd:,.0f}", _cell(s.unmet_demand_fraction, ".2%"),
                     _cell(s.slo_attainment, ".1%") + (f" ±{s.slo_attainment_se:.1%}"
                                                        if s.slo_attainment_se > 5e-4 else ""),
                     _cell(s.ttft_p95_ms / 1e3, ",.2f") + " s", _cell(s.tpot_p95_ms, ".0f") + " ms", _cell(s.within_slo_per_usd, ",.0f"),
                     f"{s.requests_simulated:,}"])
    table, hidden = fit_table(console, cols, rows, "Request by request (unmet: fluid model; SLO met: simulated)")
    console.print(table)
    days = max((len(s.days) for s in ev.strategies), default=0)
    cols = [Column("SLO met by day", 0, "left"), *(Column(f"d{d + 1}", 1 if d < 7 else 2) for d in range(days))]
    rows = [[_short(s.name), *(_cell(d.slo_attainment, ".1%") for d in s.days)] for s in ev.strategies if s.applicable]
    day_table, day_hidden = fit_table(console, cols, rows)
    console.print(day_table)
    ttft, tpot = ev.slo
    console.print(f"Replayed in the fleet simulator ({ev.wall_s:.0f} s): {ev.sampling.describe()}; arrivals "
                  f"{ev.arrivals}; lengths {ev.lengths}; routing: {ev.routing}. A request is within SLO when its "
                  f"TTFT <= {ttft:g} ms and TPOT <= {tpot:g} ms; 'in SLO/$' = requests within SLO over the "
                  "evaluated days (simulated share x demand) per dollar of the schedule; ± one standard error from "
                  "the spread between windows. Per-day figures, with the windows' mean load, in --json."
                  + (f" Columns left out to fit: {', '.join(hidden + day_hidden)}." if hidden or day_hidden else ""),
                  highlight=False)
    over = ev.overcredited()
    if over:
        console.print("note: the allocator credits more req/s per instance than the perf model's closed-form "
                      "goodput for these offers (credited / closed form): " + ", ".join(
                          f"{oid} {credited:.1f} / {closed:.1f}" for oid, credited, closed in over) +
                      "; schedules that load them near that credit miss the SLO in the simulator.", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_cmd)
