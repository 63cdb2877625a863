"""Figures for traffic summaries and forecasts (matplotlib, headless), saved as PNG/SVG/PDF or HTML."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fleetwise.atomic import check_output_path, write_atomic
from fleetwise.errors import ConfigError
from fleetwise.report.html import html_page, png_html, table_html
from fleetwise.traffic.records import SECONDS_PER_DAY, steps_in_days

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, imported on first use (import stays fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axis_times(starts_s: np.ndarray, epoch: bool):
    """Matplotlib-friendly x values: datetimes for epoch series, days since start otherwise."""
    if epoch:
        return starts_s.astype("datetime64[s]"), "time (UTC)"
    return starts_s / SECONDS_PER_DAY, "day"


def _figure_bytes(fig, fmt: str) -> bytes:
    """The figure rendered as ``fmt`` (png, svg or pdf); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def figure_png(fig) -> bytes:
    return _figure_bytes(fig, "png")


def check_plot_path(path: str | Path) -> Path:
    """Fail before any work if a figure could not be written there (directory or suffix)."""
    path = check_output_path(path)
    if path.suffix.lower() not in (*IMAGE_SUFFIXES, ".html"):
        raise ConfigError(f"plot file must end in .png, .svg, .pdf or .html (got '{path.suffix or path.name}')",
                          file=str(path))
    return path


def save_figure(fig, path: str | Path, title: str = "fleetwise", tables: list[tuple[str, str]] | None = None
                ) -> None:
    """Write ``fig`` atomically: an image by suffix (.png/.svg/.pdf) or a self-contained .html page."""
    path = check_plot_path(path)
    suffix = path.suffix.lower()
    if suffix == ".html":
        write_atomic(path, html_page(title, [("", png_html(figure_png(fig), title)), *(tables or [])]))
        return
    write_atomic(path, _figure_bytes(fig, suffix[1:]))


def traffic_tables(summary) -> list[tuple[str, str]]:
    """The statistics of a traffic summary as HTML tables (a page shows them next to its figure)."""
    from fleetwise.report.html import table_html

    overview = table_html(
        ["kind", "span (h)", "requests", "mean req/s", "peak / mean", "inter-arrival CV", "tokens/s (in + out)",
         "missing bins"],
        [[summary.kind, summary.duration_s / 3600, summary.requests, summary.mean_rate_rps, summary.peak_to_mean,
          summary.interarrival_cv, summary.tokens_per_s_mean, summary.missing_bins]])
    rate = table_html([f"req/s per {summary.rate_bin_s:g} s bin", *summary.rate],
                      [["rate", *summary.rate.values()]])
    rows = [[name, *dist.values()] for name, dist in (("input tokens", summary.input_tokens),
                                                      ("output tokens", summary.output_tokens)) if dist]
    sections = [("Overview", overview), ("Rate", rate)]
    if rows:
        keys = next(d for d in (summary.input_tokens, summary.output_tokens) if d)
        sections.append(("Token lengths", table_html(["", *keys], rows)))
    return sections


def traffic_figure(summary):
    """Rate over time, the weekday x time-of-day P95 heatmap, and token-length histograms (traces)."""
    plt = pyplot()
    rows = 3 if summary.input_tokens is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=(11, 3.2 * rows))
    s = summary.series
    x, label = _axis_times(s.starts, s.epoch)
    axes[0].plot(x, s.values, lw=0.8)
    axes[0].set(title=f"Request rate per {s.period_s:g} s bin", xlabel=label, ylabel="req/s")
    p = summary.profile
    per_day = round(SECONDS_PER_DAY / float(p.bin_s))
    grid = np.full((7, per_day), np.nan)
    grid[p.weekday, (p.bin_start_s // p.bin_s).astype(int)] = p.rate_rps[:, 2]
    im = axes[1].imshow(grid, aspect="auto", extent=(0, 24, 6.5, -0.5), interpolation="nearest")
    axes[1].set(title=f"P95 rate by weekday and {p.bin_s / 60:g}-minute bin", xlabel="hour of day",
                yticks=range(7), yticklabels=[p.weekday_label(d) for d in range(7)])
    fig.colorbar(im, ax=axes[1], label="req/s")
    if rows == 3:
        axes[2].hist(_hist_source(summary, "input"), bins=60, alpha=0.6, label="input tokens", log=True)
        axes[2].hist(_hist_source(summary, "output"), bins=60, alpha=0.6, label="output tokens", log=True)
        axes[2].set(title="Token lengths", xlabel="tokens", ylabel="requests")
        axes[2].legend()
    fig.tight_layout()
    return fig


def _hist_source(summary, which: str) -> np.ndarray:
    """The sampled token lengths of a trace summary (only trace summaries get the histogram row)."""
    return np.asarray(summary.lengths[which], dtype=float)


def forecast_figure(history, forecast, history_days: float = 3.0):
    """The last days of history and the forecast median with its quantile bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    keep = steps_in_days(history_days, history.period_s)
    h = history.slice(max(len(history) - keep, 0))
    x, label = _axis_times(h.starts, h.epoch)
    ax.plot(x, h.values, lw=0.8, color="black", label="history")
    fx, _ = _axis_times(forecast.starts, forecast.epoch)
    qs = sorted(forecast.quantiles)
    if 0.5 in qs:
        ax.plot(fx, forecast.quantile(0.5), color="C0", label=f"{forecast.method} median")
    for q in qs:
        if q > 0.5:
            ax.fill_between(fx, forecast.quantile(0.5) if 0.5 in qs else 0, forecast.quantile(q), alpha=0.15,
                            color="C0", label=f"to q{q:g}")
    ax.set(title="Forecast", xlabel=label, ylabel="req/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def score_table(scores) -> str:
    qs = sorted(scores[0].coverage) if scores else []
    headers = ["method", "horizon steps", "folds", "WAPE", "MAPE", *[f"cover q{q:g}" for q in qs]]
    rows = [[s.method, s.horizon_steps, s.folds, s.wape, s.mape, *[s.coverage[q] for q in qs]] for s in scores]
    return table_html(headers, rows)
