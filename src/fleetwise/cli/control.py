"""``fleetwise control``: the running controller (observe, forecast, re-optimize, act) and its manifests."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetwise.cli import checks

control_app = typer.Typer(no_args_is_help=False, add_completion=False)


@control_app.callback(invoke_without_command=True)
def control_command(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="advisory: decide, record and expose, change nothing (default); "
                                           "active: also act on the fleet; noop: observe and expose only.")]
    = "advisory",
    actuator: Annotated[str, typer.Option(help="local (fleetwise emulate processes on this machine), kubernetes "
                                               "(one Deployment per pool and tier) or webhook (POST each plan).")]
    = "local",
    policy: Annotated[str, typer.Option(help="hybrid (forecast + MILP floor, reactive net above; default), rolling "
                                             "(forecast + MILP only) or reactive (thresholds only).")] = "hybrid",
    metrics: Annotated[str, typer.Option(help="scrape (each worker's /metrics), scrape:URL,URL (a fixed fleet) "
                                              "or prometheus:URL (PromQL).")] = "scrape",
    model: Annotated[str, typer.Option("--model", "-m", help="Model every worker serves.")] = "llama-3.1-8b",
    gpu: Annotated[str, typer.Option(help="GPU type of a worker.")] = "h100",
    gpus: Annotated[int, typer.Option(help="GPUs per worker (tensor parallel).", callback=checks.at_least_one)] = 1,
    precision: Annotated[str, typer.Option(help="Precision: bf16, fp8, int4, ...")] = "fp8",
    engine: Annotated[str, typer.Option(help="Engine profile: vllm, sglang, trtllm.")] = "vllm",
    offer: Annotated[str | None, typer.Option(help="Instance offer whose prices apply (default: cheapest).")]
    = None,
    ttft_ms: Annotated[float, typer.Option("--ttft-p95-ms", help="p95 TTFT target.",
                                           callback=checks.number(gt=0, what="TTFT target"))] = 1000.0,
    tpot_ms: Annotated[float, typer.Option("--tpot-p95-ms", help="p95 TPOT / inter-token latency target.",
                                           callback=checks.number(gt=0, what="TPOT target"))] = 50.0,
    interval: Annotated[float, typer.Option(help="Slow loop period, s: forecast + rolling MILP.",
                                            callback=checks.number(ge=1, le=86400, what="interval"))] = 300.0,
    fast_interval: Annotated[float, typer.Option(help="Reconcile step period, s: SLO burn, queue, spot notices.",
                                                 callback=checks.number(ge=0.1, le=3600, what="fast interval"))]
    = 10.0,
    time_scale: Annotated[float, typer.Option(help="Workers' clock speed-up (emulated workers run with the "
                                                    "same --time-scale); intervals are in their time.",
                                              callback=checks.number(gt=0, le=1000, what="time scale"))] = 1.0,
    initial: Annotated[str, typer.Option(help="Workers when the store holds no earlier intent, e.g. "
                                              "on_demand=2,spot=1.")] = "on_demand=1",
    max_workers: Annotated[int, typer.Option(help="Most workers the controller asks for.",
                                             callback=checks.number(ge=1, le=10_000, what="max workers"))] = 64,
    budget: Annotated[float | None, typer.Option(
        "--budget-usd-per-hour", help="The desired fleet never costs more per hour (spot counted at the on-demand "
        "price: its request may fall back).", callback=checks.number(gt=0, what="budget"))] = None,
    cold_start_s: Annotated[float | None, typer.Option(
        "--cold-start-s", help="Worker start-up time, s (default: the perf model's estimate).",
        callback=checks.number(ge=0, le=86400, what="cold start"))] = None,
    store: Annotated[str, typer.Option(help="Where decisions and intents live: a SQLite file path or URL, or "
                                            "postgresql://user@host/db.")] = "fleetwise-control.db",
    webhook_url: Annotated[str | None, typer.Option(help="--actuator webhook: where plans are POSTed.")] = None,
    namespace: Annotated[str, typer.Option(help="--actuator kubernetes: namespace.")] = "default",
    fleet: Annotated[str, typer.Option(help="--actuator local: tag of this fleet's worker processes.")] = "fw",
    host: Annotated[str, typer.Option(help="Address of the API and dashboard.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and dashboard (0: any free port).",
                                      callback=checks.number(ge=0, le=65535, what="port"))] = 9000,
    keep_workers: Annotated[bool, typer.Option(
        "--keep-workers", help="--actuator local: leave the workers running on exit (a restarted controller "
        "adopts them; a killed one always leaves them).")] = False,
) -> None:
    """Run the controller: every --fast-interval it reads the fleet and its vLLM metrics, handles spot notices
    (drain, replace spot-first, on-demand fallback) and reacts to SLO burn; every --interval it forecasts and
    re-optimizes. Decisions are stored (--store) and served on --port: / (dashboard), /api/state,
    /api/decisions, /api/backends, /metrics. A restarted controller adopts the fleet it finds.
    Stop with Ctrl-C (the current step finishes; local workers are stopped unless --keep-workers).

    Subcommand: `fleetwise control manifests --plan PLAN.json` writes Kubernetes manifests.
    """
    if ctx.invoked_subcommand is not None:
        return
    from fleetwise.control.controller import ControlConfig
    from fleetwise.control.service import build_controller, serve

    config = ControlConfig(model=model, gpu=gpu, gpus=gpus, precision=precision, engine=engine, offer=offer,
                           ttft_ms=ttft_ms, tpot_ms=tpot_ms, mode=mode, interval_s=interval,
                           fast_interval_s=fast_interval, time_scale=time_scale, initial=_counts(initial),
                           max_workers=max_workers, cold_start_s=cold_start_s, budget_usd_per_hour=budget, policy=policy)
    options = {"webhook_url": webhook_url} if actuator == "webhook" else \
        {"namespace": namespace} if actuator == "kubernetes" else {"fleet": fleet}
    controller = build_controller(config, actuator=actuator, metrics=metrics, store=store, **options)

    def started(bound: int) -> None:
        print(f"fleetwise control: {mode} mode, {actuator} actuator, {controller.spec.replica.label} per worker; "
              f"dashboard and API on http://{host}:{bound}/", file=sys.stderr, flush=True)

    serve(controller, host, port, started, stop_workers=actuator == "local" and not keep_workers)


def _counts(text: str) -> tuple[tuple[str, int], ...]:
    from fleetwise.control.types import TIERS
    from fleetwise.errors import ConfigError

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        tier, _, n = part.partition("=")
        if tier not in TIERS or not n.strip().isdigit():
            raise ConfigError(f"--initial: '{part[:40]}' is not TIER=COUNT (tiers: {', '.join(TIERS)})")
        out.append((tier, int(n)))
    return tuple(out)


def register(app: typer.Typer) -> None:
    app.add_typer(control_app, name="control")
    try:
        from fleetwise.cli.control_manifests import manifests_command
    except ImportError:  # pragma: no cover - the manifests command ships with the kubernetes actuator
        return
    control_app.command("manifests")(manifests_command)
