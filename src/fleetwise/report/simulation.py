"""HTML report of simulated fleet runs: outcome tables, the fleet by tier against demand and the queue, latency
CDFs, cumulative cost, and spot preemptions - one page comparing any number of runs (strategies)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fleetwise.atomic import check_output_path, write_atomic
from fleetwise.errors import ConfigError
from fleetwise.report.figures import figure_png, pyplot
from fleetwise.report.html import html_page, png_html, table_html

if TYPE_CHECKING:
    from fleetwise.sim.results import SimulationResult

TIERS = (("reserved", "reserved"), ("on_demand", "on-demand"), ("spot", "spot"))
SUMMARY_HEADERS = ["strategy", "requests", "completed", "migrated", "requeued", "dropped", "unfinished",
                   "TTFT p50 ms", "TTFT p95 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p95 ms", "TPOT p99 ms",
                   "SLO attainment %", "cost USD", "USD per 1M tokens", "GPU busy %"]
CLASS_HEADERS = ["strategy", "class", "requests", "completed", "TTFT p50 ms", "TTFT p95 ms", "TTFT p99 ms",
                 "TPOT p50 ms", "TPOT p95 ms", "TPOT p99 ms", "SLO attainment %"]
EVENT_HEADERS = ["strategy", "time s", "instance", "kept", "migrated", "requeued"]
CDF_POINTS = 2000  # points per CDF line (a million requests need no more to look the same)
MAX_EVENT_ROWS = 100


def _num(x: float) -> float | str:
    """A table cell: '-' for undefined values (no completions, no tokens)."""
    return x if math.isfinite(x) else "-"


def _pcts(d: dict[str, float]) -> list:
    return [_num(d[k]) for k in ("p50", "p95", "p99")]


def _summary_row(r) -> list:
    return [r.strategy, r.requests, r.completed, r.migrated, r.requeued, r.dropped, r.unfinished,
            *_pcts(r.ttft_ms), *_pcts(r.tpot_ms), _num(100 * r.slo_attainment), r.cost_usd,
            _num(r.usd_per_1m_tokens), 100 * r.gpu_busy_fraction]


def _class_rows(results) -> list[list]:
    return [[r.strategy, c.name, c.requests, c.completed, *_pcts(c.ttft_ms), *_pcts(c.tpot_ms),
             _num(100 * c.slo_attainment)] for r in results if len(r.by_class) > 1 for c in r.by_class]


def _drop_rows(results) -> list[list]:
    return [[r.strategy, reason, n] for r in results for reason, n in sorted(r.dropped_by_reason.items())]


def _time_unit(results) -> tuple[float, str]:
    """Divisor and label of the time axis: minutes for runs up to 3 hours, hours beyond."""
    longest = max(r.duration_s for r in results)
    return (60.0, "minutes") if longest <= 3 * 3600 else (3600.0, "hours")


def _held(r, unit: float, series: list) -> tuple[np.ndarray, np.ndarray]:
    """Tick times and values with the last value held to the end of the run (so the last step shows)."""
    t = [k.t for k in r.timeline]
    if t and r.duration_s > t[-1]:
        t, series = [*t, r.duration_s], [*series, series[-1]]
    return np.array(t) / unit, np.array(series, dtype=float)


def _serving_panel(ax, r, unit: float) -> None:
    ticks = r.timeline
    layers = [_held(r, unit, [k.serving.get(role, 0) for k in ticks])[1] for role, _ in TIERS]
    t, booting = _held(r, unit, [sum(k.serving.values()) + sum(k.provisioning.values()) for k in ticks])
    ax.stackplot(t, *layers, labels=[label for _, label in TIERS], alpha=0.7, step="post")
    ax.plot(t, booting, color="grey", lw=0.8, ls="--", drawstyle="steps-post", label="+ provisioning")
    ax.set(title=r.strategy, ylabel="instances serving")
    ax.set_ylim(bottom=0)
    rate = ax.twinx()  # arrivals of the interval ending at each tick
    rate.plot(t[: len(ticks)], [k.arrivals_rps for k in ticks], color="black", lw=0.8, drawstyle="steps-pre",
              label="arrivals")
    rate.set_ylabel("arrivals req/s")
    rate.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = rate.get_legend_handles_labels()
    rate.legend(handles + h2, labels + l2, loc="upper left", fontsize=7)  # on the twin: drawn on top


def _queue_panel(ax, r, unit: float, label: str) -> None:
    for name, key, color in (("in flight", "in_flight", "C0"), ("queued", "queued", "C3")):
        t, n = _held(r, unit, [getattr(k, key) for k in r.timeline])
        ax.plot(t, n, lw=0.8, drawstyle="steps-post", color=color, label=name)
    ax.set(xlabel=label, ylabel="requests")
    ax.legend(loc="upper left", fontsize=7)


def _fleet_figure(results):
    """Per run: instances serving stacked by tier vs arrivals (twin axis), and a small queue panel below."""
    plt = pyplot()
    unit, label = _time_unit(results)
    fig, axes = plt.subplots(2 * len(results), 1, figsize=(11, 4.2 * len(results)), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * len(results)})
    for i, r in enumerate(results):
        top, bottom = axes[2 * i, 0], axes[2 * i + 1, 0]
        bottom.sharex(top)
        _serving_panel(top, r, unit)
        _queue_panel(bottom, r, unit, label)
    fig.tight_layout()
    return fig


def latency_cdf(values: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted finite values and their share of *all* requests (those never completed keep the curve below 1)."""
    x = np.sort(values[np.isfinite(values)])
    if len(x) > CDF_POINTS:
        idx = np.linspace(0, len(x) - 1, CDF_POINTS).round().astype(int)
        return x[idx], (idx + 1) / total
    return x, np.arange(1, len(x) + 1) / max(total, 1)


def _latency_figure(results):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for r in results:
        for ax, values in ((axes[0], r.ttft_s), (axes[1], r.tpot_s)):
            x, y = latency_cdf(np.asarray(values, dtype=float) * 1e3, r.requests)
            ax.plot(x, y, lw=1.0, drawstyle="steps-post", label=r.strategy)
    axes[0].set(title="TTFT", xlabel="ms (log)", ylabel="fraction of all requests", xscale="log", ylim=(0, 1.02))
    axes[1].set(title="TPOT", xlabel="ms", ylim=(0, 1.02))
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _cost_figure(results):
    plt = pyplot()
    unit, label = _time_unit(results)
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for r in results:
        t = [k.t for k in r.timeline]
        usd = [k.cost_usd for k in r.timeline]
        if not t or r.duration_s > t[-1]:  # the run's end, billed as in the summary
            t, usd = [*t, r.duration_s], [*usd, r.cost_usd]
        ax.plot(np.array(t) / unit, usd, label=f"{r.strategy} (${r.cost_usd:,.2f})")
    ax.set(title="Cumulative cost", xlabel=label, ylabel="USD")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _preemption_figure(results):
    """Per run with notices: requests kept / migrated / requeued at each spot notice."""
    plt = pyplot()
    unit, label = _time_unit(results)
    hit = [r for r in results if r.preemption_events]
    fig, axes = plt.subplots(len(hit), 1, figsize=(11, 2.4 * len(hit)), squeeze=False, sharex=True)
    for ax, r in zip(axes[:, 0], hit):
        t = np.array([e["t_s"] for e in r.preemption_events]) / unit
        for key, marker, color in (("migrated", "^", "C0"), ("requeued", "x", "C3"), ("kept", "o", "C2")):
            n = [e[key] for e in r.preemption_events]
            ax.plot(t, n, marker, color=color, label=f"{key} ({sum(n):,})")
        ax.vlines(t, 0, [max(e["kept"], e["migrated"], e["requeued"]) for e in r.preemption_events],
                  color="grey", lw=0.5)
        ax.set(title=f"{r.strategy}: {len(t)} spot notice(s)", ylabel="requests")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=7)
    axes[-1, 0].set(xlabel=label, xlim=(0, max(r.duration_s for r in results) / unit))
    fig.tight_layout()
    return fig


def _event_rows(results) -> list[list]:
    rows = [[r.strategy, e["t_s"], e["instance"], e["kept"], e["migrated"], e["requeued"]]
            for r in results for e in r.preemption_events]
    return rows[:MAX_EVENT_ROWS]


def _preemption_section(results) -> str:
    rows = _event_rows(results)
    total = sum(len(r.preemption_events) for r in results)
    more = f"<p class='note'>first {len(rows)} of {total:,} notices</p>" if total > len(rows) else ""
    return (png_html(figure_png(_preemption_figure(results)), "spot preemptions")
            + table_html(EVENT_HEADERS, rows) + more)


def _sections(results) -> list[tuple[str, str]]:
    sections = [("Summary", table_html(SUMMARY_HEADERS, [_summary_row(r) for r in results]))]
    if any(len(r.by_class) > 1 for r in results):
        sections.append(("By priority class", table_html(CLASS_HEADERS, _class_rows(results))))
    if any(r.dropped_by_reason for r in results):
        sections.append(("Dropped requests", table_html(["strategy", "reason", "requests"], _drop_rows(results))))
    sections.append(("Fleet vs demand", png_html(figure_png(_fleet_figure(results)), "instances by tier vs demand")))
    sections.append(("Latency", png_html(figure_png(_latency_figure(results)), "latency CDFs")))
    sections.append(("Cost", png_html(figure_png(_cost_figure(results)), "cumulative cost")))
    if any(r.preemption_events for r in results):
        sections.append(("Spot preemptions", _preemption_section(results)))
    return sections


def simulation_report(path: str | Path, results: list[SimulationResult], title: str = "fleetwise simulate",
                      notes: str = "") -> None:
    """Write one self-contained HTML page comparing simulated runs (``SimulationResult``); atomic."""
    path = check_output_path(path)
    if not results:
        raise ConfigError("no simulation results to report", file=str(path))
    write_atomic(path, html_page(title, _sections(list(results)), note=notes))
