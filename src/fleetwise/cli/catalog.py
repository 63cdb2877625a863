"""``fleetwise catalog``: list what the catalog knows, with sources."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from fleetwise.catalog import load_catalog
from fleetwise.cli.output import console, print_json
from fleetwise.errors import ConfigError
from fleetwise.perf.arch import active_params, param_counts

SECTIONS = ("gpus", "models", "precisions", "offers")


def catalog_command(
    section: Annotated[str, typer.Argument(help=f"What to list: {', '.join(SECTIONS)}.")] = "gpus",
    catalog: Annotated[Optional[str], typer.Option(help="Catalog: 'seed-scenario' or a directory overlaying the default.")] = None,
    cloud: Annotated[Optional[str], typer.Option(help="Offers: only this cloud.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List GPUs, models, precisions or instance offers, each with its source and as-of date."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown section '{section}' (one of {', '.join(SECTIONS)})")
    cat = load_catalog(catalog)
    rows = _rows(cat, section, cloud)
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"{section} ({cat.name} catalog)")
    for col in rows[0] if rows else []:
        table.add_column(col, overflow="fold", max_width=60 if col == "source" else None)
    for r in rows:
        table.add_row(*[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(table)


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
    return [{"id": o.id, "gpu": f"{o.gpu_count}x{o.gpu}", **{t: o.price(t) or "" for t in
             ("on_demand", "reserved_1y", "reserved_3y", "spot")}, "spot_bucket": o.spot_interruption_bucket or "",
             "as_of": o.as_of} for o in cat.offers.values() if not cloud or o.cloud == cloud.lower()]


def register(app: typer.Typer) -> None:
    app.command("catalog")(catalog_command)
