"""``fleetwise control``: the running controller (observe, forecast, re-optimize, act) and its manifests."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.cli.options import TpotSlo, TtftSlo, accelerator

control_app = typer.Typer(no_args_is_help=False, add_completion=False)


@control_app.callback(invoke_without_command=True)
def control_command(
    ctx: typer.Context,
    config_file: Annotated[str | None, typer.Option(
        "--config", help="control.yaml with any of these options (keys: the option names with _ for -; "
        "initial: {tier: count}); options on the command line win.", metavar="<path>")] = None,
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
    ttft_ms: TtftSlo = 1000.0,
    tpot_ms: TpotSlo = 50.0,
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
    capacity_rps: Annotated[float | None, typer.Option(
        "--capacity-rps", help="Requests/s one worker serves within the SLO, what the policy sizes with (default: "
        "the perf model's closed-form estimate at 1,000 / 250 tokens; give `fleetwise plan`'s goodput for your "
        "lengths, or your own measurement).", callback=checks.number(gt=0, what="capacity"))] = None,
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

    o = _with_file(ctx, config_file)
    o["gpu"], o["gpus"] = accelerator(o["gpu"], o["gpus"], ctx)
    config = ControlConfig(model=o["model"], gpu=o["gpu"], gpus=o["gpus"], precision=o["precision"],
                           engine=o["engine"], offer=o["offer"], ttft_ms=o["ttft_ms"], tpot_ms=o["tpot_ms"],
                           mode=o["mode"], interval_s=o["interval"], fast_interval_s=o["fast_interval"],
                           time_scale=o["time_scale"], initial=_counts(o["initial"]), max_workers=o["max_workers"],
                           cold_start_s=o["cold_start_s"], budget_usd_per_hour=o["budget"], policy=o["policy"],
                           capacity_rps=o["capacity_rps"])
    kind = o["actuator"]
    options = {"webhook_url": o["webhook_url"]} if kind == "webhook" else \
        {"namespace": o["namespace"]} if kind == "kubernetes" else {"fleet": o["fleet"]}
    controller = build_controller(config, actuator=kind, metrics=o["metrics"], store=o["store"], **options)

    def started(bound: int) -> None:
        print(f"fleetwise control: {o['mode']} mode, {kind} actuator, {controller.spec.replica.label} per worker; "
              f"dashboard and API on http://{o['host']}:{bound}/", file=sys.stderr, flush=True)

    serve(controller, o["host"], o["port"], started, stop_workers=kind == "local" and not o["keep_workers"])


# control.yaml keys whose parameter has another name
_FILE_KEYS = {"ttft_p95_ms": "ttft_ms", "tpot_p95_ms": "tpot_ms", "budget_usd_per_hour": "budget"}


def _with_file(ctx: typer.Context, path: str | None) -> dict:
    """The command's options, with those left at their default taken from ``--config`` when it sets them."""
    from fleetwise.control.config import load_control_file

    out = dict(ctx.params)
    if path is None:
        return out
    for key, value in load_control_file(path).items():
        name = _FILE_KEYS.get(key, key)
        source = ctx.get_parameter_source(name)  # typer ships its own click: compare by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            out[name] = value
    return out


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
