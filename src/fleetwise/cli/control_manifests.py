"""``fleetwise control manifests``: Kubernetes manifests (vLLM Deployments, Karpenter NodePools, KEDA
ScaledObjects) for a ``fleetwise plan --json`` or ``fleetwise optimize --json`` result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fleetwise.cli import checks
from fleetwise.control.manifests import DEFAULT_IMAGE, DEFAULT_PROMETHEUS
from fleetwise.errors import InputFormatError


def _read_plan(path: Path) -> dict:
    """The JSON object in ``path``, or an InputFormatError naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFormatError(f"cannot read the file ({exc.strerror or exc})", file=str(path)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputFormatError(f"not JSON ({' '.join(str(exc).split())[:120]})", file=str(path)) from None


def manifests_command(
    plan: Annotated[Path, typer.Option("--plan", help="Output of 'fleetwise plan --json' or "
                                                      "'fleetwise optimize --json'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Multi-document YAML file to write.",
                                      callback=checks.output_file(".yaml", ".yml"))],
    namespace: Annotated[str, typer.Option(help="Namespace of the Deployments and ScaledObjects.")] = "default",
    image: Annotated[str, typer.Option(help="Worker image.")] = DEFAULT_IMAGE,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to serve (catalog name or Hugging Face "
                                                                   "id); default: the plan's (optimize plans "
                                                                   "need it).")] = None,
    candidate: Annotated[int, typer.Option(help="Which ranked plan candidate to deploy (0: the cheapest).",
                                           callback=checks.number(ge=0, what="candidate"))] = 0,
    tp: Annotated[int | None, typer.Option("--tp", help="Tensor parallel size (default: the plan's; a whole "
                                                        "instance for an optimize plan).",
                                           callback=checks.at_least_one)] = None,
    prometheus: Annotated[str, typer.Option(help="Prometheus URL the KEDA triggers query.")] = DEFAULT_PROMETHEUS,
    node_class: Annotated[str, typer.Option("--node-class", help="Karpenter EC2NodeClass the NodePools use.")]
    = "default",
    reserved_capacity_type: Annotated[str, typer.Option(
        "--reserved-capacity-type", help="Karpenter capacity type of the reserved tier: on-demand (reserved "
        "instances, savings plans) or reserved (capacity reservations, Karpenter >= 1.3).")] = "on-demand",
) -> None:
    """Write Kubernetes manifests for a plan: a vLLM Deployment and a KEDA ScaledObject per offer and tier, a
    Karpenter NodePool per tier. The ScaledObjects follow the controller's fleetwise_desired_replicas gauge."""
    from fleetwise.control.manifests import render_manifests, write_manifests
    from fleetwise.errors import ConfigError

    if reserved_capacity_type not in ("on-demand", "reserved"):
        raise ConfigError("--reserved-capacity-type must be on-demand or reserved")
    docs = render_manifests(_read_plan(plan), model=model, namespace=namespace, image=image, source=str(plan),
                            candidate=candidate, tp=tp, prometheus_url=prometheus, node_class=node_class,
                            reserved_capacity_type=reserved_capacity_type)
    write_manifests(docs, out)
    kinds = [d["kind"] for d in docs]
    print(f"fleetwise control manifests: wrote {len(docs)} objects to {out} ("
          + ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)) + ")", file=sys.stderr)
