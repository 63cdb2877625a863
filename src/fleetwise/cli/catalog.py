"""``fleetwise catalog``: list what the catalog knows, with sources."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fleetwise.catalog import load_catalog
from fleetwise.cli.output import console, print_json
from fleetwise.cli.tables import Column, fit_table
from fleetwise.errors import ConfigError
from fleetwise.perf.arch import active_params, param_counts

SECTIONS = ("gpus", "models", "precisions", "offers", "quality")
# Offers table: what to keep as the terminal narrows (0 = always).
_OFFER_COLUMNS = {"offer": 0, "gpu": 0, "on_demand": 0, "spot": 1, "region": 1, "reserved_1y": 2, "reserved_3y": 3,
                  "spot_bucket": 4, "as_of": 5}


def catalog_command(
    section: Annotated[str, typer.Argument(help=f"What to list: {', '.join(SECTIONS)}.")] = "gpus",
    catalog: Annotated[str | None, typer.Option(help="Catalog: 'seed-scenario' or a directory overlaying the default.")] = None,
    cloud: Annotated[str | None, typer.Option(help="Offers: only this cloud.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List GPUs, models, precisions, instance offers or published quality figures, each with its source and as-of date.

    'quality' lists the accuracy drop vs bf16 each precision has for each model, as `plan --max-quality-drop`
    uses them.
    """
    if section not in SECTIONS:
        raise ConfigError(f"unknown section '{section}' (one of {', '.join(SECTIONS)})")
    cat = load_catalog(catalog)
    rows = _rows(cat, section, cloud)
    if json_out:
        print_json(rows)
        return
    title = f"{section} ({cat.name} catalog)"
    if section == "offers":
        _print_offers(rows, title)
        return
    table = Table(title=title)
    for col in rows[0] if rows else []:
        table.add_column(col, overflow="fold", max_width=60 if col == "source" else None)
    for r in rows:
        table.add_row(*[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(table)


def _cell(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _print_offers(rows: list[dict], title: str) -> None:
    """Offers with short ids (cloud:instance type) and the columns that fit the terminal."""
    columns = [Column("offer", 0, "left"), Column("region", _OFFER_COLUMNS["region"], "left"),
               *(Column(k, p, "left" if k in ("gpu", "spot_bucket", "as_of") else "right")
                 for k, p in _OFFER_COLUMNS.items() if k not in ("offer", "region"))]
    cells = [[f"{r['cloud']}:{r['instance_type']}", r["region"], *(_cell(r[c.name]) for c in columns[2:])]
             for r in rows]
    table, hidden = fit_table(console, columns, cells, title)
    console.print(table)
    if hidden:
        console.print(f"[dim]Hidden to fit {console.width} columns: {', '.join(hidden)} (see --json).[/]")


def _rows(cat, section: str, cloud: str | None) -> list[dict]:
    if section == "gpus":
        return [{"id": g.id, "memory_gib": g.memory_gib, "hbm_tbps": g.hbm_bandwidth_tbps,
                 "bf16_tflops": g.tflops.get("bf16", 0.0), "fp8_tflops": g.tflops.get("fp8", 0.0),
                 "interconnect": g.interconnect, "source": g.source, "as_of": g.as_of} for g in cat.gpus.values()]
    if section == "models":
        return [{"id": m.id, "params_b": param_counts(m).total / 1e9, "active_b": active_params(m) / 1e9,
                 "published_b": m.published_params_b, "layers": m.num_layers, "attention": m.attention,
                 "source": m.source, "as_of": m.as_of} for m in cat.models.values()]
    if section == "precisions":
        return [{"id": p.id, "weight_bytes": p.weight_bytes, "compute": p.compute_dtype, "kv": p.kv_dtype,
                 "native": ",".join(p.native_generations), "source": p.source, "as_of": p.as_of}
                for p in cat.precisions.values()]
    if section == "quality":
        return [{"precision": p.id, "models": ",".join(q.models), "drop_pct": q.drop_pct, "basis": q.basis,
                 "source": q.source, "as_of": q.as_of} for p in cat.precisions.values() for q in p.quality]
    return [{"id": o.id, "cloud": o.cloud, "region": o.region, "instance_type": o.instance_type,
             "gpu": f"{o.gpu_count}x{o.gpu}", **{t: o.price(t) or "" for t in
             ("on_demand", "reserved_1y", "reserved_3y", "spot")}, "spot_bucket": o.spot_interruption_bucket or "",
             "as_of": o.as_of} for o in cat.offers.values() if not cloud or o.cloud == cloud.lower()]


def register(app: typer.Typer) -> None:
    app.command("catalog")(catalog_command)
