"""HTML report of an allocation: the schedule stacked by tier against demand, cumulative cost, the strategy
comparison and, when the schedules were replayed request by request, SLO attainment per strategy and day."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fleetwise.atomic import write_atomic
from fleetwise.report.figures import figure_png, pyplot
from fleetwise.report.html import html_page, png_html, table_html


def _stack_figure(period_h: float, demand: np.ndarray, layers: list[tuple[str, np.ndarray]], title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    x = np.arange(len(demand)) * period_h / 24
    ax.stackplot(x, *[v for _, v in layers], labels=[n for n, _ in layers], alpha=0.7, step="post")
    ax.plot(x, demand, color="black", lw=0.8, label="demand", drawstyle="steps-post")
    ax.set(title=title, xlabel="day", ylabel="req/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def _capacity_layers(schedule, availability: np.ndarray) -> list[tuple[str, np.ndarray]]:
    cap = np.array([o.capacity_rps for o in schedule.offers])
    res = np.full(schedule.spot.shape[1], float(cap @ schedule.reserved_counts()))
    return [("reserved", res), ("on-demand", cap @ schedule.on_demand), ("spot", (cap * availability) @ schedule.spot)]


def _cost_figure(period_h: float, series: list[tuple[str, np.ndarray]]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for name, per_period in series:
        ax.plot(np.arange(len(per_period)) * period_h / 24, np.cumsum(per_period), label=name)
    ax.set(title="Cumulative cost", xlabel="day", ylabel="USD")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _per_period_cost(schedule, period_h: float) -> np.ndarray:
    T = schedule.spot.shape[1]
    out = np.zeros(T)
    for i, o in enumerate(schedule.offers):
        for (oid, term), n in schedule.reserved.items():
            if oid == o.id:
                out += n * o.price(term) * period_h
        for tier, counts in (("spot", schedule.spot[i]), ("on_demand", schedule.on_demand[i])):
            if o.price(tier) is not None:
                out += counts * o.price(tier) * period_h
    return out


def _requests_sections(requests) -> list[tuple[str, str]]:
    """``optimize --evaluate requests``: each strategy's requests within SLO, per dollar and per day."""
    shown = [s for s in requests.strategies if s.applicable]
    rows = [[s.name, s.cost_usd, f"{s.unmet_demand_fraction:.2%}",
             f"{s.slo_attainment:.1%}" + (f" ± {s.slo_attainment_se:.1%}" if s.slo_attainment_se > 0 else ""),
             s.ttft_p95_ms / 1e3, s.tpot_p95_ms, s.within_slo_per_usd] for s in shown]
    head = ["strategy", "cost USD", "unmet (fluid)", "SLO met (simulated)", "p95 TTFT s", "p95 TPOT ms",
            "within SLO per $"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for s in shown:
        days = [d for d in s.days if d.slo_attainment == d.slo_attainment]  # NaN: a day without demand
        ax.plot([d.day + 1 for d in days], [100 * d.slo_attainment for d in days], marker="o", label=s.name)
    ax.set(title="Requests within SLO by day (simulated)", xlabel="day", ylabel="% within SLO", ylim=(0, 102))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    ttft, tpot = requests.slo
    note = (f"<p>Every strategy's schedule replayed through the fleet simulator on the same requests: "
            f"{requests.arrivals}; {requests.lengths}; {requests.routing}. A request is within SLO when its TTFT "
            f"is at most {ttft:g} ms and its TPOT at most {tpot:g} ms.</p>")
    return [("Request by request (simulated)", note + table_html(head, rows) + png_html(figure_png(fig)))]


def allocation_report(path: str | Path, plan, comparison=None, requests=None) -> None:
    """Write the report: the plan alone, or with the evaluation of every strategy (and, with ``requests``
    from :func:`fleetwise.sim.evaluate.evaluate_requests`, their request-by-request replay)."""
    from fleetwise.allocate.evaluate import Schedule

    sections = []
    if comparison is None:
        sched = Schedule("plan", plan.offers, plan.reserved, plan.spot, plan.on_demand)
        fig = _stack_figure(plan.period_h, plan.demand_rps, _capacity_layers(sched, plan.availability),
                            "Planned capacity by tier vs forecast demand")
        sections.append(("Schedule", png_html(figure_png(fig))))
        cost = _cost_figure(plan.period_h, [("plan", _per_period_cost(sched, plan.period_h))])
        sections.append(("Cost", png_html(figure_png(cost))))
        rows = [[k, v] for k, v in plan.monthly_usd().items()]
        sections.append(("Monthly cost by tier (USD)", table_html(["tier", "USD/month"], rows)))
    else:
        c = comparison
        fw = c.schedules[c.fleetwise.name]
        fig = _stack_figure(c.period_h, c.demand_rps, _capacity_layers(fw, plan.availability),
                            "fleetwise capacity by tier vs actual demand")
        sections.append(("Schedule", png_html(figure_png(fig))))
        cost = _cost_figure(c.period_h, [(name, _per_period_cost(s, c.period_h)) for name, s in c.schedules.items()])
        sections.append(("Cost over time (running hours)", png_html(figure_png(cost))))
        hs = c.hindsight.cost_usd
        rows = [[e.name, e.cost_usd, e.cost_usd / hs if hs else "-", f"{e.unmet_demand_fraction:.3%}"]
                if e.applicable else [e.name, f"n/a: {e.reason}", "-", "-"]
                for e in (c.fleetwise, c.hindsight, *c.baselines)]
        sections.append(("Comparison", table_html(["strategy", "cost USD", "x hindsight", "unmet demand"], rows)))
        if requests is not None:
            sections += _requests_sections(requests)
    res = [[oid, term, n] for (oid, term), n in sorted(plan.reserved.items()) if n > 0]
    sections.append(("Reservations", table_html(["offer", "term", "count"], res) if res else "<p>none</p>"))
    write_atomic(path, html_page("fleetwise allocation", sections))
