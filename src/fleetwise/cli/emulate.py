"""``fleetwise emulate``: GPU-free workers that answer like vLLM servers on the given GPU."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.cli.options import accelerator
from fleetwise.errors import ConfigError

MAX_WORKERS = 256
"""Workers in one process: each is an event-loop task and a listening socket; a few hundred fit in memory,
but on two cores more than a few dozen busy ones slow each other's clocks."""


def emulate_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to serve (catalog name or Hugging Face id).")]
    = "llama-3.1-8b",
    gpu: Annotated[str, typer.Option(help="GPU type the worker emulates.")] = "h100",
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs of the replica (tensor parallel across all of them).",
                                      callback=checks.at_least_one)] = 1,
    precision: Annotated[str, typer.Option(help="Precision: bf16, fp8, int4, ...")] = "fp8",
    engine: Annotated[str, typer.Option(help="Engine profile: vllm, sglang, trtllm, or a profile .yaml "
                                             "(the same step model as `fleetwise simulate`).")] = "vllm",
    port: Annotated[int, typer.Option(help="Port of a single worker (0: any free port).",
                                      callback=checks.number(ge=0, le=65535, what="port"))] = 8001,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    time_scale: Annotated[float, typer.Option(
        "--time-scale", help="Run the emulated clock this many times faster than real time; latencies the "
        "worker reports (metrics) are in emulated time.", callback=checks.number(gt=0, le=1000,
                                                                                  what="time scale"))] = 1.0,
    cold_start_s: Annotated[float, typer.Option(
        "--cold-start-s", help="Emulated seconds before /health answers 200 and requests are served.",
        callback=checks.number(ge=0, le=86400, what="cold start"))] = 0.0,
    max_num_seqs: Annotated[int | None, typer.Option(
        "--max-num-seqs", help="Batch cap (default: the engine profile's).", callback=checks.at_least_one)] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Independent workers in this process, on ports --port-base .. --port-base+K-1.",
        callback=checks.number(ge=1, le=MAX_WORKERS, what="workers"))] = 1,
    port_base: Annotated[int | None, typer.Option(
        "--port-base", help="First port with --workers (default: --port).",
        callback=checks.number(ge=0, le=65535, what="port"))] = None,
    seed: Annotated[int, typer.Option(help="Seed of the drawn output lengths (requests without ignore_eos).",
                                      callback=checks.seed)] = 0,
    served_model_name: Annotated[str | None, typer.Option(
        "--served-model-name", help="Model id in /v1/models (default: the catalog name).")] = None,
    interrupt_at: Annotated[float | None, typer.Option(
        "--interrupt-at", help="Give every worker a spot notice this many emulated seconds after start.",
        callback=checks.number(ge=0, what="interrupt time"))] = None,
    interrupt_kind: Annotated[str, typer.Option(
        "--interrupt-kind", help="Notice format with --interrupt-at: aws, gcp or azure.")] = "aws",
    notice_s: Annotated[float, typer.Option(
        "--notice-s", help="Length of the spot notice, emulated seconds (AWS gives 120).",
        callback=checks.number(ge=0, le=86400, what="notice"))] = 120.0,
    instance_id: Annotated[str | None, typer.Option(
        "--instance-id", hidden=True, help="A tag on the process's command line by which a controller's local "
        "actuator finds the workers it started (after its own restart too); the worker does not use it.")] = None,
) -> None:
    """Serve GPU-free workers that behave like vLLM on the given GPU: OpenAI API, vLLM metrics, spot notices.

    Latencies come from the simulator's step model under continuous batching (chunked prefill, KV-cache
    admission, --max-num-seqs). Endpoints: POST /v1/completions, /v1/chat/completions (stream or not),
    GET /v1/models, /health (503 during the cold start), /metrics (vLLM's names); POST /admin/interrupt
    {"notice_s": 120, "kind": "aws|gcp|azure"} and POST /admin/config {"latency_scale", "error_rate",
    "error_status", "slow_start_s"}; the clouds' metadata paths answer the notice. Stop with Ctrl-C.
    """
    from fleetwise.emulate import EmulatorConfig, ServeOptions, run
    from fleetwise.emulate.worker import NOTICE_KINDS

    if interrupt_kind not in NOTICE_KINDS:
        raise ConfigError(f"--interrupt-kind: unknown notice kind '{interrupt_kind}' (one of "
                          f"{', '.join(NOTICE_KINDS)})")
    gpu, gpus = accelerator(gpu, gpus, ctx)
    first = port if port_base is None else port_base
    if workers > 1 and first == 0:
        ports = (0,) * workers
    else:
        if first + workers - 1 > 65535:
            raise ConfigError(f"--workers {workers} from port {first} runs past port 65535")
        ports = tuple(range(first, first + workers))
    config = EmulatorConfig(model=model, gpu=gpu, gpus=gpus, precision=precision, engine=engine,
                            time_scale=time_scale, cold_start_s=cold_start_s, max_num_seqs=max_num_seqs, seed=seed,
                            served_model_name=served_model_name)
    options = ServeOptions(host=host, ports=ports, interrupt_at_s=interrupt_at, interrupt_kind=interrupt_kind,
                           notice_s=notice_s)

    def started(fleet) -> None:
        w = fleet.workers[0]
        print(f"fleetwise emulate: {len(fleet.workers)} worker(s) of {w.replica.label} "
                          f"(engine {w.replica.profile.name}, time scale {time_scale:g}x) serving "
                          f"'{w.model_id}' on {', '.join(fleet.urls)}", file=sys.stderr, flush=True)

    fleet = run(config, options, started)
    if all(w.reclaimed for w in fleet.workers):
        print("fleetwise emulate: reclaimed (spot notice ended)", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("emulate")(emulate_command)
