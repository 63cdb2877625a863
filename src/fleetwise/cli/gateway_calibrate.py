"""``fleetwise gateway calibrate``: the routing threshold that sends a chosen share of a sample of requests to
the strong model, and what it saves against sending them all there."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.errors import ConfigError


def calibrate_command(
    sample: Annotated[Path, typer.Option(
        "--sample", help="JSONL file of request bodies, one OpenAI chat or completions body per line "
        "(a sample of the traffic the route will see).")],
    strong_share: Annotated[float, typer.Option(
        "--strong-share", help="Share of the requests to send to the strong model (0.3: the hardest 30%).",
        callback=checks.number(ge=0, le=1, what="strong share"))],
    config: Annotated[Path | None, typer.Option(
        "--config", help="gateway.yaml: the route's cheap and strong models and their prices (config prices, "
        "else derived from its fleet: entries, as the gateway meters them).")] = None,
    route: Annotated[str | None, typer.Option(
        "--route", help="Route of --config to calibrate (default: its only route).")] = None,
    cheap_price: Annotated[str | None, typer.Option(
        "--cheap-price", help="USD per 1M input/output tokens of the cheap model, e.g. 0.05/0.20 "
        "(overrides --config's price).")] = None,
    strong_price: Annotated[str | None, typer.Option(
        "--strong-price", help="USD per 1M input/output tokens of the strong model, e.g. 0.60/0.80 "
        "(overrides --config's price).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print JSON: threshold, strong_share, requests, usd_all_strong, usd_routed, "
        "saving_share.")] = False,
) -> None:
    """Calibrate a route's threshold on a sample (RouteLLM's method: the (1 - share) quantile of the scores).

    Prompt tokens are counted as ceil(UTF-8 bytes / 4); output tokens are the request's max_tokens, else the
    mean chat output (211). Put the threshold in gateway.yaml under routes.<route>.threshold.
    """
    from fleetwise.gateway.router import calibrate_route, read_sample

    prices_given = {"cheap": _price_option("--cheap-price", cheap_price),
                    "strong": _price_option("--strong-price", strong_price)}
    name, cheap, strong, prices = _route(config, route, prices_given)
    result = calibrate_route(read_sample(sample), strong_share, prices, cheap=cheap, strong=strong)
    summary = _summary(result, strong_share)
    if json_out:
        from fleetwise.cli.output import print_json

        print_json(summary)
        return
    from fleetwise.cli.output import console

    console.print(_table(summary, name, cheap, strong))


def _price_option(option: str, value: str | None) -> dict[str, float] | None:
    """'0.05/0.20' -> {'input': 0.05, 'output': 0.2}; a ConfigError naming the option if it is not that."""
    if value is None:
        return None
    parts = value.split("/")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2 or not all(math.isfinite(x) and x >= 0 for x in numbers):
        raise ConfigError(f"{option} must be INPUT/OUTPUT USD per 1M tokens, two finite numbers >= 0 such as "
                          f"0.05/0.20 (got '{value}')")
    return {"input": numbers[0], "output": numbers[1]}


def _route(config: Path | None, route: str | None, given: dict) -> tuple[str, str, str, dict]:
    """(route name, cheap model, strong model, prices by model) from --config and the price options."""
    if config is None:
        if route is not None:
            raise ConfigError("--route needs --config (the gateway.yaml that declares the route)")
        missing = [f"--{side}-price" for side in ("cheap", "strong") if given[side] is None]
        if missing:
            raise ConfigError(f"give {' and '.join(missing)} (USD per 1M input/output tokens, e.g. 0.05/0.20), "
                              "or --config with prices_usd_per_1m_tokens")
        return "", "cheap", "strong", {"cheap": given["cheap"], "strong": given["strong"]}
    from fleetwise.gateway.config import load_gateway_file
    from fleetwise.gateway.pricing import prices_from

    gateway = load_gateway_file(config)
    name = _route_name(gateway.routes, route, str(config))
    chosen = gateway.routes[name]
    prices = {m: {"input": p.input_usd_per_1m, "output": p.output_usd_per_1m}  # as the gateway meters them
              for m, p in prices_from(gateway).items()}
    for side, model in (("cheap", chosen.cheap), ("strong", chosen.strong)):
        if given[side] is not None:
            prices[model] = given[side]
        elif model not in prices:
            raise ConfigError(f"route '{name}': {config} has no price for {side} model '{model}' (give "
                              f"--{side}-price INPUT/OUTPUT USD per 1M tokens, or a fleet: entry for it)")
    return name, chosen.cheap, chosen.strong, prices


def _route_name(routes: dict, route: str | None, file: str) -> str:
    if not routes:
        raise ConfigError("declares no route (routes: {NAME: {cheap: ..., strong: ...}})", file=file)
    if route is None:
        if len(routes) > 1:
            raise ConfigError(f"declares {len(routes)} routes: choose one with --route "
                              f"({', '.join(sorted(routes))})", file=file)
        return next(iter(routes))
    if route not in routes:
        raise ConfigError(f"--route: no route '{route}' (routes: {', '.join(sorted(routes))})", file=file)
    return route


def _summary(result, asked_share: float) -> dict:
    """The JSON keys; the threshold rounded down to 6 decimals so that, pasted into gateway.yaml, it routes no
    fewer requests strong than computed."""
    return {"threshold": math.floor(result.threshold * 1e6) / 1e6, "strong_share": result.strong_share,
            "strong_share_asked": asked_share, "requests": result.requests,
            "strong_requests": result.strong_requests, "prompt_tokens": result.prompt_tokens,
            "output_tokens": result.output_tokens, "usd_all_strong": result.usd_all_strong,
            "usd_routed": result.usd_routed, "saving_share": result.saving_share}


def _table(s: dict, route: str, cheap: str, strong: str):
    from rich import box
    from rich.table import Table

    title = f"fleetwise gateway calibrate{f' (route {route})' if route else ''}: {cheap} / {strong}"
    t = Table(title=title, box=box.SIMPLE_HEAD, show_header=False)
    t.add_column("")
    t.add_column("", justify="right")
    rows = [
        ("threshold", f"{s['threshold']:.6f}"),
        ("requests", f"{s['requests']:,}"),
        ("routed strong (asked)",
         f"{s['strong_requests']:,} = {s['strong_share']:.1%} ({s['strong_share_asked']:.1%})"),
        ("prompt / output tokens", f"{s['prompt_tokens']:,} / {s['output_tokens']:,}"),
        ("USD all strong", f"{s['usd_all_strong']:,.6f}"),
        ("USD routed", f"{s['usd_routed']:,.6f}"),
        ("saving vs all strong", f"{s['saving_share']:.1%}"),
    ]
    for label, value in rows:
        t.add_row(label, value)
    return t


def register(group: typer.Typer) -> None:
    """Add ``calibrate`` to the ``gateway`` command group."""
    group.command("calibrate")(calibrate_command)
