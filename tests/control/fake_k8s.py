"""A tiny Kubernetes API server for the actuator tests: real HTTP on a free loopback port, so the official
``kubernetes`` client runs unmodified against it.

It serves, in any namespace: ``apps/v1`` deployments (list with a label selector, create, get, patch), the
``deployments/{name}/scale`` subresource (get, patch) and ``core/v1`` pods (list, get, patch, delete). Patches accept
``application/merge-patch+json`` and ``application/strategic-merge-patch+json`` (the client's default for an
object body); both are applied as a JSON merge patch (RFC 7386), which is what a strategic merge does for the
maps and scalars touched here. A small ReplicaSet emulation creates or deletes pods when a Deployment's
replicas change, deleting in the ReplicaSet controller's order (unscheduled, then not Ready, then the lowest
``controller.kubernetes.io/pod-deletion-cost``, then the newest). Test hooks move pods through their life
(:meth:`FakeK8s.schedule`, :meth:`FakeK8s.ready`, :meth:`FakeK8s.terminate`), scale as someone else would
(:meth:`FakeK8s.external_scale`) and make the next requests fail (:meth:`FakeK8s.fail`). Every request is
recorded in :attr:`FakeK8s.requests`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?(/scale)?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    content_type: str
    body: object


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, anything else replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeK8s:
    """The fake API server; use as a context manager (``with FakeK8s() as k8s: k8s.url``)."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}
        self.requests: list[Request] = []
        self._failures: list[tuple[str, str, int]] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------------ test hooks

    def writes(self) -> list[Request]:
        """The requests that changed something (POST / PATCH / DELETE)."""
        return [r for r in self.requests if r.method in ("POST", "PATCH", "DELETE")]

    def fail(self, method: str, path_part: str, status: int) -> None:
        """Answer the next ``method`` request whose path contains ``path_part`` with ``status``."""
        self._failures.append((method, path_part, status))

    def pod_names(self, deployment: str | None = None, ns: str = "default") -> list[str]:
        with self._lock:
            return sorted(name for (n, name), p in self.pods.items() if n == ns and (
                deployment is None or p["metadata"]["labels"].get("fleetwise.dev/deployment") == deployment))

    def schedule(self, pod: str, ns: str = "default") -> None:
        """Bind a pod to a node (it starts booting)."""
        with self._lock:
            p = self.pods[(ns, pod)]
            p["spec"]["nodeName"] = f"node-{pod}"
            p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}

    def ready(self, pod: str, ip: str = "10.0.0.1", ns: str = "default") -> None:
        """Make a pod Running and Ready with ``ip``."""
        with self._lock:
            p = self.pods[(ns, pod)]
            p["spec"]["nodeName"] = f"node-{pod}"
            p["status"] = {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}

    def ready_all(self, ns: str = "default") -> None:
        for k, name in enumerate(self.pod_names(ns=ns)):
            self.ready(name, f"10.0.0.{k + 1}", ns)

    def terminate(self, pod: str, ns: str = "default") -> None:
        """Give a pod a deletionTimestamp (it is shutting down but still listed)."""
        with self._lock:
            self.pods[(ns, pod)]["metadata"]["deletionTimestamp"] = _stamp(T0 + timedelta(hours=1))

    def external_scale(self, name: str, replicas: int, ns: str = "default") -> None:
        """Change a Deployment's replicas as kubectl scale or an HPA would."""
        with self._lock:
            self._set_replicas(self.deployments[(ns, name)], replicas)

    def add_deployment(self, body: dict, ns: str = "default") -> dict:
        """Create a Deployment directly (as ``kubectl apply`` of rendered manifests would)."""
        with self._lock:
            return self._create_deployment(ns, copy.deepcopy(body))

    # ------------------------------------------------------------------------------------------------ the API

    def _create_deployment(self, ns: str, body: dict) -> dict:
        meta = body.setdefault("metadata", {})
        meta.update(namespace=ns, uid=f"uid-{next(self._ids)}", resourceVersion="1", generation=1,
                    creationTimestamp=_stamp(T0))
        body.setdefault("spec", {}).setdefault("replicas", 1)
        body["status"] = {}
        self.deployments[(ns, meta["name"])] = body
        self._reconcile(body)
        return body

    def _set_replicas(self, dep: dict, replicas: int) -> None:
        dep["spec"]["replicas"] = replicas
        meta = dep["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        meta["generation"] += 1
        self._reconcile(dep)

    def _owned(self, dep: dict) -> list[dict]:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        return [p for (n, _), p in self.pods.items() if n == ns and p["metadata"].get("ownerName") == name
                and "deletionTimestamp" not in p["metadata"]]

    def _reconcile(self, dep: dict) -> None:
        """The ReplicaSet controller in one step: create or delete pods until the replicas match."""
        pods = self._owned(dep)
        want = dep["spec"]["replicas"]
        for _ in range(want - len(pods)):
            self._new_pod(dep)
        for p in sorted(pods, key=self._deletion_rank)[: max(0, len(pods) - want)]:
            del self.pods[(p["metadata"]["namespace"], p["metadata"]["name"])]
        dep["status"] = {"replicas": want, "observedGeneration": dep["metadata"]["generation"]}

    @staticmethod
    def _deletion_rank(pod: dict) -> tuple:
        """kubernetes/pkg/controller/controller_utils.go ActivePodsWithRanks, the rules used here."""
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
        return (bool(pod["spec"].get("nodeName")), ready, cost, -pod["metadata"]["seq"])

    def _new_pod(self, dep: dict) -> None:
        template = copy.deepcopy(dep["spec"]["template"])
        seq = next(self._clock)
        name = f"{dep['metadata']['name']}-{next(self._ids):05d}"
        meta = template.get("metadata", {})
        meta.update(name=name, namespace=dep["metadata"]["namespace"], uid=f"uid-{name}",
                    creationTimestamp=_stamp(T0 + timedelta(seconds=seq)), ownerName=dep["metadata"]["name"],
                    seq=seq)
        self.pods[(meta["namespace"], name)] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                               "spec": template["spec"], "status": {"phase": "Pending"}}

    @staticmethod
    def _public(obj: dict) -> dict:
        """The object as the API shows it (without the emulation's bookkeeping)."""
        out = copy.deepcopy(obj)
        for key in ("ownerName", "seq"):
            out["metadata"].pop(key, None)
        return out

    def _scale_object(self, dep: dict) -> dict:
        labels = dep["spec"]["selector"]["matchLabels"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": dep["metadata"]["name"], "namespace": dep["metadata"]["namespace"],
                             "resourceVersion": dep["metadata"]["resourceVersion"]},
                "spec": {"replicas": dep["spec"]["replicas"]},
                "status": {"replicas": len(self._owned(dep)),
                           "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}

    def handle(self, method: str, path: str, query: str, body) -> tuple[int, dict]:
        """Answer one request: (status, JSON body)."""
        with self._lock:
            for k, (m, part, status) in enumerate(self._failures):
                if m == method and part in path:
                    del self._failures[k]
                    return status, _status(status, f"injected failure of {method} {path}")
            if m := DEPLOYMENTS.match(path):
                return self._deployments_api(method, *m.groups(), query, body)
            if m := PODS.match(path):
                return self._pods_api(method, *m.groups(), query, body)
            return 404, _status(404, f"no route {path}")

    def _deployments_api(self, method, ns, name, scale, query, body):
        selector = _query(query).get("labelSelector", "")
        if name is None and method == "GET":
            items = [self._public(d) for (n, _), d in sorted(self.deployments.items())
                     if n == ns and _matches(d["metadata"].get("labels", {}), selector)]
            return 200, {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": items}
        if name is None and method == "POST":
            if (ns, body["metadata"]["name"]) in self.deployments:
                return 409, _status(409, f'deployments.apps "{body["metadata"]["name"]}" already exists')
            return 201, self._public(self._create_deployment(ns, body))
        dep = self.deployments.get((ns, name))
        if dep is None:
            return 404, _status(404, f'deployments.apps "{name}" not found')
        if method == "PATCH" and scale:
            self._set_replicas(dep, int(merge_patch({"spec": {}}, body)["spec"]["replicas"]))
        elif method == "PATCH":
            patched = merge_patch(dep, body)
            replicas = patched["spec"].get("replicas", 1)
            patched["spec"]["replicas"] = dep["spec"]["replicas"]
            self.deployments[(ns, name)] = dep = patched
            if replicas != dep["spec"]["replicas"]:
                self._set_replicas(dep, replicas)
        return 200, self._scale_object(dep) if scale else self._public(dep)

    def _pods_api(self, method, ns, name, query, body):
        selector = _query(query).get("labelSelector", "")
        if name is None and method == "GET":
            items = [self._public(p) for (n, _), p in sorted(self.pods.items())
                     if n == ns and _matches(p["metadata"].get("labels", {}), selector)]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        pod = self.pods.get((ns, name))
        if pod is None:
            return 404, _status(404, f'pods "{name}" not found')
        if method == "PATCH":
            self.pods[(ns, name)] = pod = merge_patch(pod, body)
        if method == "DELETE":  # gone at once (no grace period here); its ReplicaSet replaces it
            del self.pods[(ns, name)]
            owner = self.deployments.get((ns, pod["metadata"].get("ownerName")))
            if owner is not None:
                self._reconcile(owner)
        return 200, self._public(pod)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                ctype = self.headers.get("Content-Type", "")
                fake.requests.append(Request(self.command, path, query, ctype, body))
                if self.command == "PATCH" and ctype not in ("application/merge-patch+json",
                                                              "application/strategic-merge-patch+json"):
                    status, out = 415, _status(415, f"unsupported patch type {ctype}")
                else:
                    status, out = fake.handle(self.command, path, query, body)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args) -> None:  # quiet
                pass

        return Handler


def _query(query: str) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(query).items()}


def _status(code: int, message: str) -> dict:
    reasons = {404: "NotFound", 409: "AlreadyExists", 415: "UnsupportedMediaType", 500: "InternalError",
               403: "Forbidden", 422: "Invalid"}
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": message,
            "reason": reasons.get(code, "Unknown"), "code": code}
