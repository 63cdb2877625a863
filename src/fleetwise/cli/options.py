"""The option conventions every command follows (README, "Command-line conventions"), as shared definitions.

* The file a command works on is its first argument (``fleetwise simulate TRACE``, ``optimize SERIES``,
  ``calibrate POINTS``); the old option spellings (``--trace``, ``--series``) still work, hidden.
* ``-o/--out`` is a command's main output file; ``--report`` an HTML page, ``--plot`` an image, ``--json``
  machine-readable stdout, ``-q/--quiet`` no progress on stderr.
* SLO targets are ``--ttft-ms`` / ``--tpot-ms`` (at the SLO's percentile; ``--ttft-p95-ms`` / ``--tpot-p95-ms``
  are the same options' older names).
* An accelerator is ``--gpu h100`` with ``--gpus 8``, or ``--gpu h100:8`` (Kubernetes/SkyPilot style).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.errors import ConfigError

TtftSlo = Annotated[float, typer.Option(
    "--ttft-ms", "--ttft-p95-ms", help="TTFT target at the SLO percentile (p95), ms.", callback=checks.slo_target)]
TpotSlo = Annotated[float, typer.Option(
    "--tpot-ms", "--tpot-p95-ms", help="TPOT / inter-token latency target at the SLO percentile (p95), ms.",
    callback=checks.slo_target)]

TraceArg = Annotated[Path | None, typer.Argument(
    metavar="TRACE", show_default=False,
    help="Request trace (Azure, BurstGPT, Mooncake, CSV/Parquet/JSONL).")]
TraceAlias = Annotated[Path | None, typer.Option("--trace", hidden=True, help="The TRACE argument's old name.")]


def input_file(positional: Path | None, alias: Path | None, name: str, alias_name: str, *,
               required: bool = False) -> Path | None:
    """The command's input file, given as its first argument or by its old option name (not both)."""
    if positional is not None and alias is not None:
        raise ConfigError(f"give {name} once: as the first argument ({alias_name} is its old spelling)")
    value = positional if positional is not None else alias
    if value is None and required:
        raise ConfigError(f"missing {name}: give the file to work on as the first argument")
    return value


def accelerator(gpu: str, gpus: int | None, ctx: typer.Context | None = None,
                gpus_param: str = "gpus") -> tuple[str, int | None]:
    """``--gpu h100:8`` -> ``('h100', 8)``; else ``(gpu, gpus)``. With ``ctx``, a ``--gpus`` left at its default
    yields to the count in ``--gpu``; one given on the command line must agree with it."""
    if ":" not in gpu:
        return gpu, gpus
    name, _, count = gpu.rpartition(":")
    try:
        n = int(count)
    except ValueError:
        n = 0
    if not name or n < 1:
        raise ConfigError(f"--gpu '{gpu[:40]}': write TYPE or TYPE:COUNT, e.g. h100:8")
    given = gpus is not None
    if ctx is not None and given:  # typer vendors click: compare the source by name, not by enum identity
        source = ctx.get_parameter_source(gpus_param)
        given = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
    if given and gpus != n:
        raise ConfigError(f"--gpu {gpu} says {n} GPUs but --gpus says {gpus}: give the count once")
    return name, n
