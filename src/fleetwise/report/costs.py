"""Cost report of a gateway's usage: spend by tenant, model and day, and what each saving mechanism saved
(cache, in-flight de-duplication, routing) - as rows for a table, and as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from fleetwise.atomic import check_output_path, write_atomic
from fleetwise.report.figures import figure_png, pyplot
from fleetwise.report.html import html_page, png_html, table_html

COLUMNS = ["requests", "errors", "prompt tokens", "completion tokens", "cost $", "list cost $", "saved $"]


def group_rows(groups: dict) -> list[list]:
    """One row per group of ``usage.usage_summary`` (by_tenant, by_model or by_day), costliest first."""
    order = sorted(groups, key=lambda k: -groups[k]["cost_usd"])
    return [[k, g["requests"], g["errors"], g["prompt_tokens"], g["completion_tokens"], round(g["cost_usd"], 6),
             round(g["list_cost_usd"], 6), round(g["saved_usd"], 6)] for k in order for g in [groups[k]]]


def savings_rows(summary: dict) -> list[list]:
    """[mechanism, saved $, share of the list cost]."""
    listed = summary["total"]["list_cost_usd"]
    return [[m, round(v, 6), f"{v / listed:.1%}" if listed > 0 else "-"] for m, v in summary["saved_by"].items()]


def costs_report(path: str | Path, summary: dict, source: str = "") -> None:
    """Write the HTML page: totals, savings, the three groupings and a daily spend plot; atomic."""
    path = check_output_path(path)
    t = summary["total"]
    sections = [
        ("Total", table_html(["", *COLUMNS], [["all", t["requests"], t["errors"], t["prompt_tokens"],
                                                t["completion_tokens"], round(t["cost_usd"], 6),
                                                round(t["list_cost_usd"], 6), round(t["saved_usd"], 6)]])),
        ("Savings by mechanism", table_html(["mechanism", "saved $", "of list cost"], savings_rows(summary))),
        ("By tenant", table_html(["tenant", *COLUMNS], group_rows(summary["by_tenant"]))),
        ("By model", table_html(["model", *COLUMNS], group_rows(summary["by_model"]))),
        ("By day (UTC)", table_html(["day", *COLUMNS], group_rows(summary["by_day"]))),
    ]
    if summary["by_day"]:
        sections.append(("Spend per day", png_html(figure_png(_daily_figure(summary)), "spend per day")))
    write_atomic(path, html_page("fleetwise gateway costs", sections, note=source))


def _daily_figure(summary: dict):
    plt = pyplot()
    days = sorted(summary["by_day"])
    cost = [summary["by_day"][d]["cost_usd"] for d in days]
    saved = [summary["by_day"][d]["saved_usd"] for d in days]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(days, cost, label="spent")
    ax.bar(days, saved, bottom=cost, label="saved (cache, de-duplication, routing)", alpha=0.6)
    ax.set_ylabel("USD")
    ax.set_title("Gateway spend per day")
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
