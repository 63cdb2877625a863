"""``fleetwise report``: reports over what the running parts recorded (``costs``: the gateway's usage)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.cli.output import console, print_json

report_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Reports over what the gateway and the controller recorded.")


@report_app.command("costs")
def costs_cmd(
    state: Annotated[str, typer.Option(help="The gateway's --state: sqlite:///PATH, redis://... or "
                                            "postgresql://... (memory state is gone with its process).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    days: Annotated[float | None, typer.Option(help="Only the last N days.",
                                               callback=checks.number(gt=0, le=3660, what="days"))] = None,
    html: Annotated[str | None, typer.Option(
        "--report", help="Also write an HTML page with the tables and a daily plot.", metavar="<path>",
        callback=checks.output_file(".html"))] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Spend by tenant, model and day from the gateway's usage log, and what the cache, in-flight
    de-duplication and routing saved (list cost = the model asked for, sent as asked, minus what was paid)."""
    from fleetwise.gateway.usage import open_usage, usage_summary
    from fleetwise.report.costs import COLUMNS, costs_report, group_rows, savings_rows

    async def load():
        log = await open_usage(state)
        try:
            return await log.query(tenant, time.time() - days * 86400 if days else 0.0, None)
        finally:
            await log.aclose()

    summary = usage_summary(asyncio.run(load()))
    if html:
        costs_report(html, summary, f"usage in {state.split('@')[-1]}")
    if json_out:
        print_json(summary)
        return
    from rich.table import Table

    for title, key in (("by tenant", "by_tenant"), ("by model", "by_model"), ("by day (UTC)", "by_day")):
        table = Table(title=f"gateway spend {title}")
        for col in ["", *COLUMNS]:
            table.add_column(col, justify="left" if not col else "right")
        for row in group_rows(summary[key]):
            table.add_row(*(f"{v:,}" if isinstance(v, (int, float)) else str(v) for v in row))
        console.print(table)
    saved = Table(title="saved by mechanism")
    for col in ("mechanism", "saved $", "of list cost"):
        saved.add_column(col)
    for row in savings_rows(summary):
        saved.add_row(*(str(v) for v in row))
    console.print(saved)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
