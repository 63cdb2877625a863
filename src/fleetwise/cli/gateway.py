"""``fleetwise gateway``: the OpenAI-compatible front door (cache, single-flight, routing, budgets, metering)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetwise.cli import checks

gateway_app = typer.Typer(add_completion=False)


@gateway_app.callback(invoke_without_command=True)
def gateway_command(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option(
        "--config", help="gateway.yaml: backends, prices, routes, tenants, cache.", metavar="<path>")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="NAME=URL of an OpenAI-compatible server for model NAME (repeat; adds to --config).")]
    = None,
    controller: Annotated[str | None, typer.Option(
        "--controller", help="A fleetwise controller's URL: its serving workers become the backends of its model "
        "(draining ones get no new requests).")] = None,
    state: Annotated[str, typer.Option(
        help="Where budgets, cache and usage live: memory, sqlite:///PATH, redis://HOST:PORT/DB or "
        "postgresql://USER@HOST/DB.")] = "memory",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).",
                                      callback=checks.number(ge=0, le=65535, what="port"))] = 8000,
    workers: Annotated[int, typer.Option(help="Gateway processes (needs shared --state).",
                                         callback=checks.number(ge=1, le=64, what="workers"))] = 1,
) -> None:
    """Serve the OpenAI-compatible gateway: POST /v1/chat/completions and /v1/completions (stream or not),
    GET /v1/models, /v1/usage, /metrics. Deterministic requests (temperature 0 or a seed) are cached and
    identical ones in flight share one upstream call; a route model (routes: in --config) sends each request
    to its cheap or strong model by a complexity score; tenants' keys, budgets (reserved before dispatch,
    settled after), rate limits and priorities (batch/background shed first when saturated) come from
    --config. Stop with Ctrl-C.

    Subcommand: `fleetwise gateway calibrate --sample requests.jsonl --strong-share 0.3`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from fleetwise.gateway.service import gateway_file, serve

    cfg = gateway_file(config, backend or [], controller)
    if not cfg.backends and not cfg.controller:
        from fleetwise.errors import ConfigError

        raise ConfigError("no backend: give --backend NAME=URL, backends: in --config, or --controller URL")

    def started(bound: int) -> None:
        models = ", ".join(sorted(cfg.backends)) or "from the controller"
        print(f"fleetwise gateway: serving {models} on http://{host}:{bound}/v1 (state: {state.split('@')[-1]})",
              file=sys.stderr, flush=True)

    serve(cfg, state, host, port, workers, started)


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
    try:
        from fleetwise.cli.gateway_calibrate import calibrate_command
    except ImportError:  # pragma: no cover - the router ships with the gateway
        return
    gateway_app.command("calibrate")(calibrate_command)
