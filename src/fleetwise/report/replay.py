"""HTML report of a trace replay: the summary, failures, per-endpoint rows, measured vs simulated (when the
replay was compared with a simulation), latency CDFs, and the achieved rate against the trace's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fleetwise.atomic import check_output_path, write_atomic
from fleetwise.report.figures import figure_png, pyplot
from fleetwise.report.html import html_page, png_html, table_html
from fleetwise.report.simulation import latency_cdf

if TYPE_CHECKING:
    from fleetwise.replay.results import ReplayResult

PERCENTILES = ("p50", "p95", "p99")


def replay_report(path: str | Path, result: ReplayResult, summary: dict | None = None, source: str = "") -> None:
    """Write one self-contained HTML page about a replay; atomic.

    Args:
        summary: ``result.summary(...)`` with the SLO targets to show, or the dict of
            :func:`fleetwise.replay.compare.compare_with_simulation` (adds the measured vs simulated table);
            None: the summary with the default targets.
        source: where the trace came from, for the page's note.
    """
    path = check_output_path(path)
    s = summary if summary is not None else result.summary()
    streamed = ", streamed" if s["stream"] else ""
    note = (f"{source + ' ' if source else ''}against {', '.join(s['urls'])}, model {s['model']}, "
            f"{s['api']} API{streamed}; times in the trace's time (wall x {s['time_compress']:g})")
    write_atomic(path, html_page("fleetwise replay", _sections(result, s), note=note))


def _sections(result: ReplayResult, s: dict) -> list[tuple[str, str]]:
    sections = [("Summary", table_html(["metric", "value"], _summary_rows(s)))]
    if s["failed_by_reason"]:
        sections.append(("Failures", table_html(["reason", "requests", "first message"], [
            [r, n, s["first_error_by_reason"].get(r, "")] for r, n in s["failed_by_reason"].items()])))
    if len(s["by_url"]) > 1:
        headers = ["url", "sent", "completed", "failed", "tokens", "TTFT p95 ms"]
        sections.append(("Endpoints", table_html(headers, [
            [u["url"], u["sent"], u["completed"], u["failed"], u["tokens"], _cell(u["ttft_ms"]["p95"])]
            for u in s["by_url"]])))
    if "gap" in s:
        sections.append(("Measured vs simulated", table_html(
            ["metric", "percentile", "measured", "simulated", "gap %"], comparison_rows(s))))
    sections.append(("Latency", png_html(figure_png(_latency_figure(result)), "latency CDFs")))
    sections.append(("Rate", png_html(figure_png(_rate_figure(result)), "achieved vs trace rate")))
    return sections


def comparison_rows(s: dict) -> list[list]:
    """[metric, percentile, measured, simulated, gap %] per percentile of TTFT and TPOT ('-' if undefined),
    e.g. ``["TTFT ms", "p50", 37.8, 25.2, 50.4]``."""
    rows = []
    for metric in s["gap"]:
        for p in PERCENTILES:
            gap = s["gap"][metric][p]
            rows.append([metric.removesuffix("_ms").upper() + " ms", p, _cell(s[metric][p]), _cell(s["simulated"][metric][p]),
                         "-" if gap is None else 100 * gap])
    return rows


def _summary_rows(s: dict) -> list[list]:
    latency = [(f"{m} {q} ms", _cell(s[f"{m.lower()}_ms"][q])) for m in ("TTFT", "TPOT", "ITL", "E2E")
               for q in PERCENTILES]
    return [[label, value] for label, value in (
        ("requests", s["requests"]), ("sent", s["sent"]), ("completed", s["completed"]),
        ("failed", s["failed"]), ("cancelled", s["cancelled"]), ("not sent", s["not_sent"]), *latency,
        ("SLO attainment %", _cell(100 * s["slo_attainment"])), ("achieved req/s", _cell(s["achieved_rps"])),
        ("trace req/s", _cell(s["trace_rps"])), ("completed req/s", _cell(s["throughput_rps"])),
        ("output tokens/s", _cell(s["output_tokens_per_s"])),
        ("client lag p50 ms (wall)", _cell(s["client_lag_ms"]["p50"])),
        ("client lag p99 ms (wall)", _cell(s["client_lag_ms"]["p99"])), ("late sends", s["late_sends"]),
        ("duration s", s["duration_s"]), ("time compress", s["time_compress"]))]


def _cell(x: float | None) -> float | str:
    return x if x is not None and math.isfinite(x) else "-"


def _latency_figure(result: ReplayResult):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    ok = result.status_array == "ok"
    panels = ((axes[0], "TTFT", result.ttft_s, True), (axes[1], "TPOT", result.tpot_s, False),
              (axes[2], "E2E", result.e2e_s, True))
    for ax, name, values, log in panels:
        x, y = latency_cdf(np.where(ok, values, np.nan) * 1e3, len(result))
        ax.plot(x, y, lw=1.0, drawstyle="steps-post")
        ax.set(title=name, xlabel="ms (log)" if log else "ms", ylim=(0, 1.02))
        if log and len(x) and x[0] > 0:
            ax.set_xscale("log")
    axes[0].set_ylabel("fraction of all requests")
    fig.tight_layout()
    return fig


def _rate_figure(result: ReplayResult):
    plt = pyplot()
    starts, trace_rps, sent_rps = result.rate_over_time()
    fig, axes = plt.subplots(2, 1, figsize=(12, 5.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    axes[0].step(starts, trace_rps, where="post", lw=2.5, color="0.75", label="trace")
    axes[0].step(starts, sent_rps, where="post", lw=1.0, color="C0", label="sent")
    axes[0].set(ylabel="req/s", title="Achieved vs trace rate")
    axes[0].legend(loc="upper left", fontsize=8)
    sent = np.isfinite(result.sent_s)
    axes[1].plot(result.arrival_s[sent], result.client_lag_s[sent] * 1e3, ",", alpha=0.6)
    axes[1].set(ylabel="client lag ms", xlabel="trace time s")
    fig.tight_layout()
    return fig
