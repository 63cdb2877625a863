"""Kubernetes manifests for a planned fleet: vLLM Deployments, Karpenter NodePools, KEDA ScaledObjects.

:func:`render_manifests` turns the output of ``fleetwise plan --json`` (a ranked list of replica
configurations; the first, or ``candidate``, is deployed) or ``fleetwise optimize --json`` (reserved / spot /
on-demand instance counts per offer over time) into plain dicts, one per Kubernetes object; :func:`write_manifests`
writes them as one multi-document YAML file. Per (offer, tier) used there is one Deployment (named by
:func:`deployment_name`, the same name :class:`~fleetwise.control.kubernetes.KubernetesActuator` scales) and one
KEDA ScaledObject; per tier one Karpenter NodePool. The pod template is also what the actuator creates when a
Deployment is missing (:func:`deployment_manifest`).

Sources (read 2026-12-07):

- Karpenter NodePool ``karpenter.sh/v1``: https://karpenter.sh/docs/concepts/nodepools/ and the CRD
  ``kubernetes-sigs/karpenter`` ``pkg/apis/crds/karpenter.sh_nodepools.yaml`` - ``spec.template.spec``
  ``nodeClassRef`` (``group``, ``kind``, ``name``), ``requirements`` (``karpenter.sh/capacity-type`` ``spot`` /
  ``on-demand``, ``node.kubernetes.io/instance-type``), ``expireAfter``, ``taints``; ``spec.disruption``
  (``consolidationPolicy`` ``WhenEmpty`` | ``WhenEmptyOrUnderutilized``, ``consolidateAfter``).
- Karpenter's third capacity type ``reserved`` (https://karpenter.sh/docs/tasks/odcrs/, v1.3+, AWS only, behind
  the ``ReservedCapacity`` feature gate) selects EC2 On-Demand Capacity Reservations. fleetwise's ``reserved``
  tier is a billing commitment (reserved instances, savings plans) applied to ordinary on-demand instances,
  so by default reserved workers run on ``on-demand`` capacity in their own NodePool, told apart by the node
  label ``fleetwise.dev/tier: reserved``; pass ``reserved_capacity_type="reserved"`` when the reservation is an
  ODCR / capacity block and the cluster's Karpenter has the gate on.
- KEDA ScaledObject ``keda.sh/v1alpha1`` with a ``prometheus`` trigger: https://keda.sh/docs/latest/scalers/prometheus/
  (``serverAddress``, ``query``, ``threshold``; the query must return one element). The query reads the gauge
  the controller exports, :data:`fleetwise.control.names.DESIRED_REPLICAS`; with KEDA's default ``AverageValue``
  metric type and ``threshold: "1"`` the HPA it drives sets replicas = the gauge.
- vLLM (``vllm/vllm-openai`` image, ``vllm serve``): ``--tensor-parallel-size``, ``--max-num-seqs``,
  ``--dtype``, ``--quantization fp8`` (online FP8 of a 16-bit checkpoint); int8 / int4 / fp4 need a
  pre-quantized checkpoint, whose ``quantization_config`` vLLM reads itself. ``GET /health`` answers 200 once
  the engine serves; ``/metrics`` is on the same port. https://docs.vllm.ai/en/stable/deployment/k8s/

Use KEDA *or* the Kubernetes actuator to move a Deployment's replicas, not both: the actuator treats a
replica count it did not set as an external change and stands back.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetwise.control.names import DESIRED_REPLICAS
from fleetwise.errors import ConfigError, InputFormatError

DEFAULT_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_PORT = 8000  # vLLM's default; /v1/*, /health and /metrics all on it
DEFAULT_PROMETHEUS = "http://prometheus-server.monitoring.svc:9090"
MAX_NAME = 63  # DNS-1123 label (Deployment names are used as pod-name prefixes and label values)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "fleetwise"
POOL_LABEL = "fleetwise.dev/pool"  # slug: label values cannot hold the '/' of an offer id
TIER_LABEL = "fleetwise.dev/tier"  # reserved | on_demand | spot
MODEL_LABEL = "fleetwise.dev/model"  # slug
DEPLOYMENT_LABEL = "fleetwise.dev/deployment"
POOL_ANNOTATION = "fleetwise.dev/pool-id"  # the offer id itself
CAPACITY_TYPE = "karpenter.sh/capacity-type"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"
TIERS_K8S = ("reserved", "on_demand", "spot")

_PRECISION_ARGS = {"bf16": ("--dtype", "bfloat16"), "fp16": ("--dtype", "float16"), "fp32": ("--dtype", "float32"),
                   "fp8": ("--quantization", "fp8")}


def slug(text: str) -> str:
    """Lower-case DNS-1123 form of ``text``: runs of other characters become one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def deployment_name(model: str, pool: str, tier: str) -> str:
    """``fleetwise-<model>-<pool>-<tier>`` as a DNS-1123 label of at most 63 characters; a long name keeps
    its start and tier and gets an 8-hex hash of the full triple so two pools never share a name."""
    name = f"fleetwise-{slug(model)}-{slug(pool)}-{slug(tier)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(f"{model}\0{pool}\0{tier}".encode()).hexdigest()[:8]
    tail = f"-{digest}-{slug(tier)}"
    return name[: MAX_NAME - len(tail)].rstrip("-") + tail


def capacity_type(tier: str, reserved_capacity_type: str = "on-demand") -> str:
    """Karpenter's ``karpenter.sh/capacity-type`` for a fleetwise tier."""
    if tier not in TIERS_K8S:
        raise ConfigError(f"unknown tier '{tier}' (one of {', '.join(TIERS_K8S)})")
    return {"spot": "spot", "on_demand": "on-demand", "reserved": reserved_capacity_type}[tier]


@dataclass(frozen=True)
class WorkerTemplate:
    """Everything one (pool, tier) Deployment of vLLM workers needs.

    Attributes:
        model: the model vLLM loads (Hugging Face id or path) - also ``--served-model-name`` unless
            ``served_model_name`` is given.
        pool: the offer id (``aws/us-east-1/p5.4xlarge``).
        tier: ``reserved``, ``on_demand`` or ``spot``.
        namespace: where the Deployment lives.
        name_model: the model name in the Deployment name (the catalog name, usually).
        image: container image.
        port: container port of the OpenAI API, ``/health`` and ``/metrics``.
        gpus: ``nvidia.com/gpu`` limit per pod (0: none, e.g. an emulated worker).
        args: engine arguments after the model and port (TP, batch cap, dtype, extra).
        replicas: initial replicas.
        instance_type: node instance type to pin the pods to (None: any the NodePool allows).
        reserved_capacity_type: ``on-demand`` or ``reserved`` (Karpenter ODCRs) for the reserved tier.
        cpu / memory: requests per pod (None: unset).
        command: container command (None: the image's entrypoint).
    """

    model: str
    pool: str
    tier: str
    namespace: str = "default"
    name_model: str = ""
    image: str = DEFAULT_IMAGE
    port: int = DEFAULT_PORT
    gpus: int = 1
    args: tuple[str, ...] = ()
    replicas: int = 0
    instance_type: str | None = None
    reserved_capacity_type: str = "on-demand"
    cpu: str | None = None
    memory: str | None = None
    command: tuple[str, ...] | None = ("vllm", "serve")
    served_model_name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return deployment_name(self.name_model or self.model, self.pool, self.tier)


def pod_labels(t: WorkerTemplate) -> dict[str, str]:
    """The labels every pod of the Deployment carries (its selector is all of them)."""
    return {MANAGED_BY: MANAGER, MODEL_LABEL: slug(t.name_model or t.model)[:MAX_NAME].strip("-"),
            POOL_LABEL: slug(t.pool)[:MAX_NAME].strip("-"), TIER_LABEL: t.tier, DEPLOYMENT_LABEL: t.name}


def _container(t: WorkerTemplate) -> dict:
    args = [t.model, "--host", "0.0.0.0", "--port", str(t.port),
            "--served-model-name", t.served_model_name or t.name_model or t.model, *t.args]
    resources: dict = {}
    if t.gpus:
        resources["limits"] = {GPU_RESOURCE: str(t.gpus)}
    requests = {k: v for k, v in (("cpu", t.cpu), ("memory", t.memory)) if v}
    if requests:
        resources["requests"] = requests
    container = {"name": "vllm", "image": t.image, "args": args,
                 "ports": [{"name": "http", "containerPort": t.port, "protocol": "TCP"}],
                 "readinessProbe": {"httpGet": {"path": "/health", "port": t.port}, "periodSeconds": 5,
                                    "failureThreshold": 3},
                 "resources": resources, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    if t.command:
        container["command"] = list(t.command)
    return container


def _pod_spec(t: WorkerTemplate) -> dict:
    selector = {CAPACITY_TYPE: capacity_type(t.tier, t.reserved_capacity_type), TIER_LABEL: t.tier}
    if t.instance_type:
        selector[INSTANCE_TYPE] = t.instance_type
    spec = {"containers": [_container(t)], "nodeSelector": selector,
            # vLLM's workers share tensors through /dev/shm (TP > 1); the container default of 64 MiB is too small
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
            "terminationGracePeriodSeconds": 60}
    if t.gpus:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def deployment_manifest(t: WorkerTemplate) -> dict:
    """The ``apps/v1`` Deployment of one (pool, tier): vLLM pods pinned to the tier's capacity type, a
    readiness probe on ``/health``, the metrics port annotated for Prometheus' pod scraping."""
    labels = pod_labels(t)
    pod_annotations = {POOL_ANNOTATION: t.pool, "prometheus.io/scrape": "true", "prometheus.io/port": str(t.port),
                       "prometheus.io/path": "/metrics", **t.annotations}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": t.name, "namespace": t.namespace, "labels": labels,
                     "annotations": {POOL_ANNOTATION: t.pool}},
        "spec": {"replicas": t.replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": pod_annotations},
                              "spec": _pod_spec(t)}},
    }


def node_pool_manifest(tier: str, instance_types: Sequence[str], *, name_model: str, node_class: str = "default",
                       reserved_capacity_type: str = "on-demand", gpus: bool = True) -> dict:
    """The Karpenter ``NodePool`` (``karpenter.sh/v1``) of one tier: its capacity type and instance types, its
    nodes labelled with the tier (pods select it) and, for GPU pools, tainted so only GPU pods land there."""
    name = f"fleetwise-{slug(name_model)}"[: MAX_NAME - len(slug(tier)) - 1].rstrip("-") + f"-{slug(tier)}"
    requirements = [{"key": CAPACITY_TYPE, "operator": "In",
                     "values": [capacity_type(tier, reserved_capacity_type)]}]
    if instance_types:
        requirements.append({"key": INSTANCE_TYPE, "operator": "In", "values": sorted(set(instance_types))})
    spec: dict = {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
                  "requirements": requirements,
                  "expireAfter": "Never" if tier == "reserved" else "720h"}
    if gpus:
        spec["taints"] = [{"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}]
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": name, "labels": {MANAGED_BY: MANAGER}},
            "spec": {"template": {"metadata": {"labels": {TIER_LABEL: tier, MANAGED_BY: MANAGER}}, "spec": spec},
                     "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m"}}}


def scaled_object_manifest(t: WorkerTemplate, *, max_replicas: int, prometheus_url: str = DEFAULT_PROMETHEUS,
                           polling_interval_s: int = 15, cooldown_s: int = 300) -> dict:
    """The KEDA ``ScaledObject`` that sets the Deployment's replicas to the controller's
    ``fleetwise_desired_replicas{pool, tier}`` gauge (read through Prometheus)."""
    pool = t.pool.replace("\\", "\\\\").replace('"', '\\"')
    query = f'max({DESIRED_REPLICAS}{{pool="{pool}",tier="{t.tier}"}})'
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": t.name, "namespace": t.namespace, "labels": pod_labels(t)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.name},
                     "pollingInterval": polling_interval_s, "cooldownPeriod": cooldown_s,
                     "minReplicaCount": 0, "maxReplicaCount": max(1, max_replicas),
                     "triggers": [{"type": "prometheus",
                                   "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": "1"}}]}}


def vllm_args(tp: int, max_num_seqs: int | None, precision: str | None,
              extra: Iterable[str] = ()) -> tuple[str, ...]:
    """vLLM engine arguments for a planned replica configuration."""
    args = ["--tensor-parallel-size", str(tp)]
    if max_num_seqs:
        args += ["--max-num-seqs", str(max_num_seqs)]
    args += list(_PRECISION_ARGS.get((precision or "").lower(), ()))
    return (*args, *extra)


# ------------------------------------------------------------------------------------------------ plan JSON input


@dataclass(frozen=True)
class _Group:
    """One Deployment to render: a (pool, tier) with its replica configuration and replica counts."""

    pool: str
    tier: str
    instance_type: str | None
    gpus: int
    tp: int
    max_num_seqs: int | None
    precision: str | None
    replicas: int
    peak: int
    model: str


def _field(data, path: str, source: str, kind: type | tuple[type, ...]):
    """``data`` at the dotted ``path`` ('candidates.0.tp'), checked to be of ``kind``."""
    value = data
    for part in path.split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            raise InputFormatError("missing (not a 'fleetwise plan --json' / 'fleetwise optimize --json' output?)",
                                   file=source, field=path) from None
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if not ok:
        raise InputFormatError(f"expected {_kind_name(kind)}, got {type(value).__name__}", file=source, field=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputFormatError("must be finite", file=source, field=path)
    return value


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "a whole number", float: "a number", str: "a string", list: "a list",
                        dict: "an object"}.get(k, k.__name__) for k in kinds)


def _count(data, path: str, source: str) -> int:
    value = _field(data, path, source, (int, float))
    if value < 0 or value != int(value):
        raise InputFormatError(f"must be a whole number >= 0, got {value:g}", file=source, field=path)
    return int(value)


def _hf_id(model: str) -> str:
    """The Hugging Face id of a catalog model (the name itself when the catalog does not know it)."""
    from fleetwise.catalog import load_catalog
    from fleetwise.errors import UnknownNameError

    try:
        return load_catalog().model(model).hf_id
    except UnknownNameError:
        return model


def _groups_from_plan(data: dict, source: str, candidate: int, model: str | None) -> list[_Group]:
    cands = _field(data, "candidates", source, list)
    if not cands:
        raise InputFormatError("the plan has no candidates (nothing meets the SLO)", file=source, field="candidates")
    if not 0 <= candidate < len(cands):
        raise ConfigError(f"candidate {candidate} out of range: the plan ranks {len(cands)}")
    p = f"candidates.{candidate}"
    tier = _field(data, f"{p}.tier", source, str)
    if tier not in TIERS_K8S:
        raise InputFormatError(f"unknown tier '{tier}' (one of {', '.join(TIERS_K8S)})", file=source,
                               field=f"{p}.tier")
    replicas = _count(data, f"{p}.replicas", source)
    return [_Group(pool=_field(data, f"{p}.offer", source, str), tier=tier,
                   instance_type=_field(data, f"{p}.instance_type", source, str),
                   gpus=_count(data, f"{p}.num_gpus", source), tp=_count(data, f"{p}.tp", source),
                   max_num_seqs=_count(data, f"{p}.max_batch", source) or None,
                   precision=_field(data, f"{p}.precision", source, str), replicas=replicas, peak=replicas,
                   model=model or _field(data, f"{p}.model", source, str))]


def _groups_from_optimize(data: dict, source: str, model: str | None, tp: int | None) -> list[_Group]:
    if not model:
        raise ConfigError("an optimize plan does not name the model: give it (--model)")
    offers = _field(data, "schedule.offers", source, list)
    counts: dict[tuple[str, str], list[int]] = {}
    for tier in ("spot", "on_demand"):
        rows = _field(data, f"schedule.{tier}", source, list)
        if len(rows) != len(offers):
            raise InputFormatError(f"{len(rows)} rows for {len(offers)} offers", file=source, field=f"schedule.{tier}")
        for k in range(len(offers)):
            oid = _field(data, f"schedule.offers.{k}", source, str)
            row = _field(data, f"schedule.{tier}.{k}", source, list)
            counts[(oid, tier)] = [_count(data, f"schedule.{tier}.{k}.{j}", source) for j in range(len(row))]
    for j, _ in enumerate(data.get("reservations") or []):
        oid = _field(data, f"reservations.{j}.offer", source, str)
        n = _count(data, f"reservations.{j}.count", source)
        counts[(oid, "reserved")] = [counts.get((oid, "reserved"), [0])[0] + n]
    return [_optimize_group(oid, tier, c, source, model, tp) for (oid, tier), c in counts.items() if any(c)]


def _optimize_group(oid: str, tier: str, instances: list[int], source: str, model: str, tp: int | None) -> _Group:
    """An optimize schedule counts instances; a replica takes ``tp`` of an instance's GPUs (all by default)."""
    from fleetwise.catalog import load_catalog
    from fleetwise.errors import UnknownNameError

    try:
        offer = load_catalog().offer(oid)
    except UnknownNameError:
        raise InputFormatError(f"offer '{oid}' is not in the catalog", file=source, field="schedule.offers") from None
    gpus = tp or offer.gpu_count
    per_instance = offer.gpu_count // gpus
    if per_instance < 1:
        raise ConfigError(f"tensor parallel {gpus} does not fit {oid}'s {offer.gpu_count} GPUs")
    return _Group(pool=oid, tier=tier, instance_type=offer.instance_type, gpus=gpus, tp=gpus, max_num_seqs=None,
                  precision=None, replicas=instances[0] * per_instance, peak=max(instances) * per_instance,
                  model=model)


def render_manifests(plan_json: dict, *, model: str | None = None, namespace: str = "default",
                     image: str = DEFAULT_IMAGE, source: str = "plan JSON", port: int = DEFAULT_PORT,
                     candidate: int = 0, tp: int | None = None, max_num_seqs: int | None = None,
                     extra_args: Sequence[str] = (), prometheus_url: str = DEFAULT_PROMETHEUS,
                     node_class: str = "default", reserved_capacity_type: str = "on-demand",
                     max_replicas: int | None = None) -> list[dict]:
    """Kubernetes objects that run a ``fleetwise plan --json`` / ``fleetwise optimize --json`` result.

    Args:
        plan_json: the parsed JSON output.
        model: model to serve (catalog name or Hugging Face id); default: the plan's (required for optimize).
        source: the file it came from, named in errors.
        candidate: which ranked plan candidate to deploy.
        tp / max_num_seqs: override the planned tensor parallelism / batch cap (an optimize schedule has none:
            a replica then takes a whole instance).
        max_replicas: KEDA's ``maxReplicaCount`` per Deployment (default: twice the planned peak).

    Returns:
        NodePools first, then a Deployment and its ScaledObject per (offer, tier).

    Raises:
        InputFormatError: the JSON is neither output, or a field is missing / of the wrong type.
    """
    if not isinstance(plan_json, dict):
        raise InputFormatError("expected a JSON object", file=source)
    if "candidates" in plan_json:
        groups = _groups_from_plan(plan_json, source, candidate, model)
    elif "schedule" in plan_json:
        groups = _groups_from_optimize(plan_json, source, model, tp)
    else:
        raise InputFormatError("neither 'candidates' (fleetwise plan --json) nor 'schedule' (fleetwise optimize "
                               "--json)", file=source, field="candidates")
    if not groups:
        raise InputFormatError("the schedule provisions nothing", file=source, field="schedule")
    name_model = model or groups[0].model
    docs = _node_pools(groups, name_model, node_class, reserved_capacity_type)
    for g in groups:
        t = WorkerTemplate(
            model=_hf_id(g.model), pool=g.pool, tier=g.tier, namespace=namespace, name_model=name_model, image=image,
            port=port, gpus=tp or g.gpus, args=vllm_args(tp or g.tp, max_num_seqs or g.max_num_seqs, g.precision,
                                                        extra_args),
            replicas=g.replicas, instance_type=g.instance_type, reserved_capacity_type=reserved_capacity_type,
            served_model_name=name_model, annotations={"fleetwise.dev/precision": g.precision} if g.precision else {})
        docs.append(deployment_manifest(t))
        docs.append(scaled_object_manifest(t, max_replicas=max_replicas or 2 * max(g.peak, 1),
                                           prometheus_url=prometheus_url))
    return docs


def _node_pools(groups: list[_Group], name_model: str, node_class: str, reserved_capacity_type: str) -> list[dict]:
    by_tier: dict[str, list[str]] = {}
    for g in groups:
        by_tier.setdefault(g.tier, []).extend([g.instance_type] if g.instance_type else [])
    return [node_pool_manifest(tier, by_tier[tier], name_model=name_model, node_class=node_class,
                               reserved_capacity_type=reserved_capacity_type)
            for tier in TIERS_K8S if tier in by_tier]


def write_manifests(docs: Sequence[Mapping], path: str | Path) -> Path:
    """Write ``docs`` as one multi-document YAML file, atomically (all of it or nothing)."""
    import yaml

    from fleetwise.atomic import write_atomic

    text = yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False, default_flow_style=False)
    write_atomic(path, text)
    return Path(path)
