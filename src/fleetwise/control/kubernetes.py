"""The Kubernetes actuator: one Deployment of vLLM workers per (pool, tier), scaled through its scale subresource.

``observe`` lists the pods labelled ``app.kubernetes.io/managed-by: fleetwise`` (and this model) and reports
each as a :class:`~fleetwise.control.types.Worker`. ``apply`` makes a :class:`~fleetwise.control.types.FleetPlan`
true in three moves, each skipped when already done (so a second apply of the same plan sends no PATCH):

1. pods the plan drains get ``fleetwise.dev/draining: "true"`` (routers stop sending them work);
2. pods the plan removes get ``controller.kubernetes.io/pod-deletion-cost: "-1000"`` - the ReplicaSet
   controller deletes the pods of lowest cost first when it scales down (KEP-2255, beta and on by default
   since Kubernetes 1.22: https://kubernetes.io/docs/reference/labels-annotations-taints/#pod-deletion-cost,
   https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#pod-deletion-cost);
3. each Deployment is scaled (``PATCH .../deployments/<name>/scale``) to the plan's desired count plus its
   draining pods still present, so the removed pods go and the draining ones stay. A removed pod the
   scale-down would not take (the plan replaces it, so the count does not drop) is deleted directly and the
   ReplicaSet starts a fresh one.

The cost is a preference, not an order: the ReplicaSet controller deletes unscheduled, then pending, then
not-Ready pods before it looks at the cost, so a drained pod that is Ready outlives a sibling still booting
when both are candidates. The next step sees the drained pod still there and repeats the move.

Someone else may move the replicas (``kubectl scale``, an HPA / KEDA). The count this actuator last set is kept
on the Deployment (annotation ``fleetwise.dev/last-applied-replicas``, written before the scale so a crash in
between is not mistaken for an outside change); a different ``spec.replicas`` is an external change: the
actuator does not fight it this step, adopts it as the new baseline and lists it in :attr:`external_changes`
for the controller to record as a ``reconcile`` decision.

Every failed call (an HTTP error, a refused connection, a timeout) becomes an
:class:`~fleetwise.errors.ActuatorError` naming the object and the HTTP status. The ``kubernetes`` client is
imported when an actuator is built, not when ``fleetwise.control`` is.

Pod states: ``terminating`` (deletionTimestamp set), ``pending`` (not bound to a node - Karpenter is finding one),
``provisioning`` (bound, not Ready: pulling the image, loading weights), ``serving`` (Ready: ``/health`` answers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fleetwise.control.manifests import (
    DEFAULT_IMAGE,
    DEFAULT_PORT,
    MANAGED_BY,
    MANAGER,
    MODEL_LABEL,
    POOL_ANNOTATION,
    TIER_LABEL,
    WorkerTemplate,
    deployment_manifest,
    deployment_name,
    slug,
)
from fleetwise.control.types import PENDING, PROVISIONING, SERVING, TERMINATING, TIERS, FleetPlan, Worker
from fleetwise.errors import ActuatorError, ConfigError

__all__ = ["ExternalChange", "KubernetesActuator", "KubernetesConfig", "deployment_name"]

LAST_APPLIED = "fleetwise.dev/last-applied-replicas"
PREVIOUS = "fleetwise.dev/previous-replicas"  # spec.replicas before our last intent (crash-between-writes guard)
DRAINING = "fleetwise.dev/draining"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REMOVE_COST = "-1000"
MERGE_PATCH = "application/merge-patch+json"

ExternalChange = tuple[str, int, int]  # (deployment, ours, theirs)


@dataclass(frozen=True)
class KubernetesConfig:
    """Where the fleet lives and what a worker runs.

    Attributes:
        namespace: namespace of the Deployments.
        model: model the workers serve (catalog name or Hugging Face id); part of every Deployment name.
        image: worker image.
        port: container port of the OpenAI API, ``/health`` and ``/metrics``.
        extra_args: engine arguments appended to every worker's command line.
        gpus: ``nvidia.com/gpu`` limit per worker (0: none).
        cpu / memory: requests per worker.
        kubeconfig: kubeconfig file (None: the default ``~/.kube/config`` or ``$KUBECONFIG``).
        context: kubeconfig context (None: current).
        in_cluster: use the pod's service account instead of a kubeconfig.
        reserved_capacity_type: Karpenter capacity type of the reserved tier (``on-demand`` or ``reserved``).
        create_missing: create a Deployment the plan needs and the cluster lacks (else fail naming it).
        request_timeout_s: per-call timeout.
    """

    namespace: str = "default"
    model: str = "llama-3.1-8b"
    image: str = DEFAULT_IMAGE
    port: int = DEFAULT_PORT
    extra_args: tuple[str, ...] = ()
    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    reserved_capacity_type: str = "on-demand"
    create_missing: bool = True
    request_timeout_s: float = 10.0
    instance_types: Mapping[str, str] = field(default_factory=dict)


def _api_client(config: KubernetesConfig, configuration: Any = None):
    """A ``kubernetes`` ApiClient from an explicit Configuration, the in-cluster account or a kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kconfig

    if configuration is not None:
        return client.ApiClient(configuration)
    try:
        if config.in_cluster:
            kconfig.load_incluster_config()
            return client.ApiClient()
        return kconfig.new_client_from_config(config_file=config.kubeconfig, context=config.context)
    except (kconfig.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConfigError(f"kubernetes: cannot load the cluster configuration ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _api_message(exc) -> str:
    """The ``message`` of a Kubernetes Status body, else the HTTP reason."""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, TypeError, AttributeError):
        message = ""
    return " ".join(str(message or exc.reason or "").split())[:200]


@contextmanager
def _call(what: str) -> Iterator[None]:
    """Turn any failure of the Kubernetes call described by ``what`` into a one-line ActuatorError."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        raise ActuatorError(f"kubernetes: {what}: HTTP {exc.status} {_api_message(exc)}".rstrip()) from None
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise ActuatorError(f"kubernetes: {what}: {type(exc).__name__}: {_one_line(exc)}") from None


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def pod_state(pod) -> str | None:
    """The worker state of a pod, or None for one that has ended (Succeeded / Failed: the ReplicaSet replaces
    it, it will never serve again)."""
    phase = pod.status.phase if pod.status else None
    if pod.metadata.deletion_timestamp is not None:
        return TERMINATING
    if phase in ("Succeeded", "Failed"):
        return None
    if not (pod.spec and pod.spec.node_name):
        return PENDING
    return SERVING if phase == "Running" and _ready(pod) else PROVISIONING


class KubernetesActuator:
    """An :class:`~fleetwise.control.types.Actuator` over Kubernetes Deployments (see the module docstring).

    Attributes:
        external_changes: (deployment, ours, theirs) for every Deployment whose replicas someone else changed,
            found by the last :meth:`apply` (empty when none).
    """

    name = "kubernetes"

    def __init__(self, config: KubernetesConfig | None = None, *, configuration: Any = None) -> None:
        """Connect lazily configured: ``configuration`` (a ``kubernetes.client.Configuration``) wins over the
        config's in-cluster / kubeconfig choice."""
        from kubernetes import client

        self.config = config or KubernetesConfig()
        self._api = _api_client(self.config, configuration)
        self._apps = client.AppsV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self.external_changes: list[ExternalChange] = []
        self._selector = f"{MANAGED_BY}={MANAGER},{MODEL_LABEL}={slug(self.config.model)[:63].strip('-')}"

    def close(self) -> None:
        """Release the client's connection pool."""
        self._api.close()

    # -------------------------------------------------------------------------------------------------- observe

    def _pods(self) -> list:
        ns = self.config.namespace
        with _call(f"list pods in namespace '{ns}'"):
            return self._core.list_namespaced_pod(ns, label_selector=self._selector,
                                                  _request_timeout=self.config.request_timeout_s).items

    def _worker(self, pod) -> Worker | None:
        state = pod_state(pod)
        meta = pod.metadata
        labels, notes = meta.labels or {}, meta.annotations or {}
        if state is None or TIER_LABEL not in labels:
            return None
        ip = pod.status.pod_ip if pod.status else None
        created = meta.creation_timestamp.timestamp() if meta.creation_timestamp else 0.0
        return Worker(id=meta.name, pool=notes.get(POOL_ANNOTATION, labels.get("fleetwise.dev/pool", "")),
                      tier=labels[TIER_LABEL], state=state,
                      url=f"http://{ip}:{self.config.port}" if ip else "", launched_at=created)

    def observe(self) -> list[Worker]:
        """The managed pods of this model as workers, whatever created them."""
        workers = (self._worker(p) for p in self._pods())
        return sorted((w for w in workers if w is not None), key=lambda w: w.id)

    # ---------------------------------------------------------------------------------------------------- apply

    def apply(self, plan: FleetPlan) -> None:
        """Make ``plan`` true: mark draining and removed pods, then scale each Deployment through its scale
        subresource; idempotent. Raises ActuatorError when a call fails (the next step retries)."""
        self.external_changes = []
        pods = {p.metadata.name: p for p in self._pods()}
        workers = {w.id: w for w in (self._worker(p) for p in pods.values()) if w is not None}
        live = {i: w for i, w in workers.items() if w.state != TERMINATING}
        for wid in sorted(plan.draining & live.keys()):
            self._annotate(pods[wid], {DRAINING: "true"})
        for wid in sorted(plan.remove & live.keys()):
            self._annotate(pods[wid], {DRAINING: "true", DELETION_COST: REMOVE_COST})
        deployments = self._deployments()
        targets = self._targets(plan, live, deployments)
        self._delete_unscaled(plan, live, deployments, targets)
        for key, target in sorted(targets.items()):
            self._scale(key, target, deployments.get(deployment_name(self.config.model, *key)))

    def _delete_unscaled(self, plan: FleetPlan, live: Mapping[str, Worker], deployments: Mapping,
                         targets: Mapping) -> None:
        """Delete removed pods that no scale-down will take (the plan replaces them: the Deployment keeps its
        size), so the ReplicaSet starts fresh ones in their place."""
        removed: dict[tuple[str, str], list[str]] = {}
        for wid in sorted(plan.remove & live.keys()):
            removed.setdefault((live[wid].pool, live[wid].tier), []).append(wid)
        for key, wids in removed.items():
            dep = deployments.get(deployment_name(self.config.model, *key))
            current = dep.spec.replicas if dep is not None and dep.spec.replicas is not None else 0
            if current - targets.get(key, 0) < len(wids):
                for wid in wids:
                    self._delete_pod(wid)

    def _delete_pod(self, name: str) -> None:
        with _call(f"delete pod '{name}'"):
            self._core.delete_namespaced_pod(name, self.config.namespace,
                                             _request_timeout=self.config.request_timeout_s)

    def _targets(self, plan: FleetPlan, live: Mapping[str, Worker], deployments: Mapping) -> dict:
        """Replicas per (pool, tier): the desired count plus the draining workers still there; a Deployment of
        this model the plan does not name keeps only its draining workers."""
        for pool, tier in plan.desired:
            if tier not in TIERS:
                raise ConfigError(f"plan: unknown tier '{tier}' for pool '{pool}' (one of {', '.join(TIERS)})")
        targets = {key: int(n) for key, n in plan.desired.items()}
        for dep in deployments.values():
            key = _key(dep)
            if key is not None:
                targets.setdefault(key, 0)
        for wid, w in live.items():
            if wid in plan.draining and wid not in plan.remove:
                targets[(w.pool, w.tier)] = targets.get((w.pool, w.tier), 0) + 1
        return targets

    def _annotate(self, pod, annotations: Mapping[str, str]) -> None:
        """Merge-patch ``annotations`` onto a pod unless it carries them already."""
        current = pod.metadata.annotations or {}
        if all(current.get(k) == v for k, v in annotations.items()):
            return
        name = pod.metadata.name
        with _call(f"annotate pod '{name}'"):
            self._core.patch_namespaced_pod(name, self.config.namespace, {"metadata": {"annotations": dict(annotations)}},
                                            _content_type=MERGE_PATCH, _request_timeout=self.config.request_timeout_s)

    def _deployments(self) -> dict:
        ns = self.config.namespace
        with _call(f"list deployments in namespace '{ns}'"):
            items = self._apps.list_namespaced_deployment(ns, label_selector=self._selector,
                                                          _request_timeout=self.config.request_timeout_s).items
        return {d.metadata.name: d for d in items}

    def _scale(self, key: tuple[str, str], target: int, dep) -> None:
        """Scale one Deployment to ``target`` unless it is there, or someone else moved it (then adopt)."""
        name = deployment_name(self.config.model, *key)
        if dep is None:
            if target == 0:
                return
            dep = self._create(key, name)
        replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
        notes = dep.metadata.annotations or {}
        ours, previous = _int(notes.get(LAST_APPLIED)), _int(notes.get(PREVIOUS))
        if ours is not None and replicas != ours and replicas != previous:
            self.external_changes.append((name, ours, replicas))
            self._set_baseline(name, {LAST_APPLIED: str(replicas), PREVIOUS: str(replicas)})
            return
        if replicas == target:
            if ours != target:
                self._set_baseline(name, {LAST_APPLIED: str(target), PREVIOUS: str(replicas)})
            return
        self._set_baseline(name, {LAST_APPLIED: str(target), PREVIOUS: str(replicas)})
        with _call(f"scale deployment '{name}' to {target}"):
            self._apps.patch_namespaced_deployment_scale(name, self.config.namespace, {"spec": {"replicas": target}},
                                                         _request_timeout=self.config.request_timeout_s)

    def _set_baseline(self, name: str, annotations: Mapping[str, str]) -> None:
        with _call(f"annotate deployment '{name}'"):
            self._apps.patch_namespaced_deployment(name, self.config.namespace,
                                                   {"metadata": {"annotations": dict(annotations)}},
                                                   _content_type=MERGE_PATCH,
                                                   _request_timeout=self.config.request_timeout_s)

    def _create(self, key: tuple[str, str], name: str):
        """Create the missing Deployment of ``key`` at 0 replicas (the scale that follows sizes it)."""
        if not self.config.create_missing:
            raise ActuatorError(f"kubernetes: deployment '{name}' for {key[0]}/{key[1]} does not exist "
                                f"(create it with 'fleetwise control manifests')")
        body = deployment_manifest(self.template(*key))
        body["metadata"]["annotations"].update({LAST_APPLIED: "0", PREVIOUS: "0"})
        with _call(f"create deployment '{name}'"):
            return self._apps.create_namespaced_deployment(self.config.namespace, body,
                                                           _request_timeout=self.config.request_timeout_s)

    def template(self, pool: str, tier: str) -> WorkerTemplate:
        """The worker template of a (pool, tier) Deployment this actuator creates."""
        c = self.config
        return WorkerTemplate(model=c.model, pool=pool, tier=tier, namespace=c.namespace, name_model=c.model,
                              image=c.image, port=c.port, gpus=c.gpus, args=tuple(c.extra_args),
                              instance_type=c.instance_types.get(pool) or _instance_type(pool),
                              reserved_capacity_type=c.reserved_capacity_type, cpu=c.cpu, memory=c.memory)


def _key(dep) -> tuple[str, str] | None:
    """The (pool, tier) a managed Deployment serves, from its annotation and label."""
    pool = (dep.metadata.annotations or {}).get(POOL_ANNOTATION)
    tier = (dep.metadata.labels or {}).get(TIER_LABEL)
    return (pool, tier) if pool and tier else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _instance_type(pool: str) -> str | None:
    """The catalog's instance type of an offer id (None when the catalog does not know it)."""
    from fleetwise.catalog import load_catalog
    from fleetwise.errors import FleetwiseError

    try:
        return load_catalog().offer(pool).instance_type
    except FleetwiseError:
        return None
