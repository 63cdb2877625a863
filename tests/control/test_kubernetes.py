"""KubernetesActuator driven through the official ``kubernetes`` client against a fake API server on loopback."""

from __future__ import annotations

import pytest
from fake_k8s import FakeK8s

from fleetwise.control.kubernetes import (
    DELETION_COST,
    DRAINING,
    LAST_APPLIED,
    KubernetesActuator,
    KubernetesConfig,
    deployment_name,
)
from fleetwise.control.manifests import WorkerTemplate, deployment_manifest
from fleetwise.control.types import FleetPlan
from fleetwise.errors import ActuatorError

MODEL = "llama-3.1-8b"
POOL = "aws/us-east-1/p5.4xlarge"
SPOT, OD = (POOL, "spot"), (POOL, "on_demand")
SPOT_DEP = deployment_name(MODEL, POOL, "spot")


@pytest.fixture
def k8s():
    with FakeK8s() as server:
        yield server


@pytest.fixture
def actuator(k8s):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = k8s.url
    act = KubernetesActuator(KubernetesConfig(model=MODEL, request_timeout_s=5), configuration=configuration)
    yield act
    act.close()


def scale_patches(k8s) -> list:
    return [r for r in k8s.writes() if r.path.endswith("/scale")]


def test_deployment_name_is_dns_1123_and_unique():
    name = deployment_name("meta-llama/Llama-3.1-70B-Instruct", "azure/eastus2/standard_nd96isr_h100_v5", "on_demand")
    other = deployment_name("meta-llama/Llama-3.1-70B-Instruct", "azure/eastus2/standard_nd96isr_h100_v6", "on_demand")
    assert len(name) <= 63 and name != other
    assert name.startswith("fleetwise-meta-llama") and name.endswith("-on-demand")
    assert all(c.isalnum() and c.islower() or c.isdigit() or c == "-" for c in name)
    assert deployment_name(MODEL, POOL, "spot") == "fleetwise-llama-3-1-8b-aws-us-east-1-p5-4xlarge-spot"


def test_observe_maps_pod_states(k8s, actuator):
    assert actuator.observe() == []
    actuator.apply(FleetPlan({SPOT: 4}))
    a, b, c, d = k8s.pod_names(SPOT_DEP)
    k8s.schedule(b)
    k8s.ready(c, "10.1.2.3")
    k8s.ready(d)
    k8s.terminate(d)
    workers = {w.id: w for w in actuator.observe()}
    assert {i: w.state for i, w in workers.items()} == {a: "pending", b: "provisioning", c: "serving",
                                                         d: "terminating"}
    assert workers[c].url == "http://10.1.2.3:8000" and workers[a].url == ""
    assert {(w.pool, w.tier) for w in workers.values()} == {SPOT}
    assert workers[a].launched_at == pytest.approx(1767225600.0, abs=10)  # the fake's creation time, 2026-01-01


def test_scale_up_and_down_through_the_scale_subresource(k8s, actuator):
    actuator.apply(FleetPlan({SPOT: 3, OD: 1}))
    assert len(k8s.pod_names(SPOT_DEP)) == 3 and len(k8s.pod_names(deployment_name(MODEL, POOL, "on_demand"))) == 1
    patches = scale_patches(k8s)
    assert {p.body["spec"]["replicas"] for p in patches} == {3, 1}
    assert all(p.path.endswith("/scale") and p.method == "PATCH" for p in patches)
    # the only other writes: creating the missing Deployments and recording the replicas set
    assert all(r.path.endswith("/scale") or r.method == "POST" or r.body["metadata"]["annotations"]
               for r in k8s.writes())
    actuator.apply(FleetPlan({SPOT: 1, OD: 1}))
    assert len(k8s.pod_names(SPOT_DEP)) == 1
    assert scale_patches(k8s)[-1].body == {"spec": {"replicas": 1}}
    assert k8s.deployments[("default", SPOT_DEP)]["metadata"]["annotations"][LAST_APPLIED] == "1"
    # a pod of the rendered template is what the actuator created: pinned to spot capacity
    pod = k8s.pods[("default", k8s.pod_names(SPOT_DEP)[0])]
    assert pod["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"


def test_drain_then_remove_deletes_exactly_the_drained_pod(k8s, actuator):
    actuator.apply(FleetPlan({SPOT: 3}))
    k8s.ready_all()
    victim = k8s.pod_names(SPOT_DEP)[0]  # the oldest: the ReplicaSet alone would delete the newest
    # step 1: drain it - kept running (desired 2 + 1 draining = 3), annotated so routers skip it
    actuator.apply(FleetPlan({SPOT: 2}, draining=frozenset({victim})))
    assert len(k8s.pod_names(SPOT_DEP)) == 3
    assert k8s.pods[("default", victim)]["metadata"]["annotations"][DRAINING] == "true"
    # step 2: remove it - lowest deletion cost, then one replica fewer
    actuator.apply(FleetPlan({SPOT: 2}, remove=frozenset({victim})))
    names = k8s.pod_names(SPOT_DEP)
    assert len(names) == 2 and victim not in names
    cost_patch = [r for r in k8s.writes() if r.path.endswith(f"/pods/{victim}") and DELETION_COST in str(r.body)]
    assert cost_patch and cost_patch[0].body["metadata"]["annotations"][DELETION_COST] == "-1000"
    order = [r.path for r in k8s.writes()]
    assert order.index(cost_patch[0].path) < len(order) - 1 and order[-1].endswith("/scale")


def test_same_plan_twice_changes_nothing(k8s, actuator):
    actuator.apply(FleetPlan({SPOT: 2}))
    k8s.ready_all()
    first = k8s.pod_names(SPOT_DEP)
    plan = FleetPlan({SPOT: 1}, draining=frozenset({first[0]}), remove=frozenset({first[1]}))
    actuator.apply(plan)
    before = len(k8s.requests)
    actuator.apply(plan)
    assert [r for r in k8s.requests[before:] if r.method != "GET"] == []
    # 1 desired + 1 draining: the removed pod was replaced (deleted; the ReplicaSet started a fresh one)
    names = k8s.pod_names(SPOT_DEP)
    assert len(names) == 2 and first[0] in names and first[1] not in names
    assert [r.path.rsplit("/", 1)[-1] for r in k8s.writes() if r.method == "DELETE"] == [first[1]]


def test_external_change_is_adopted_not_fought(k8s, actuator):
    actuator.apply(FleetPlan({SPOT: 2}))
    k8s.external_scale(SPOT_DEP, 5)  # kubectl scale / an HPA
    before = len(scale_patches(k8s))
    actuator.apply(FleetPlan({SPOT: 2}))
    assert actuator.external_changes == [(SPOT_DEP, 2, 5)]
    assert len(scale_patches(k8s)) == before  # did not fight
    assert len(k8s.pod_names(SPOT_DEP)) == 5
    assert k8s.deployments[("default", SPOT_DEP)]["metadata"]["annotations"][LAST_APPLIED] == "5"
    actuator.apply(FleetPlan({SPOT: 2}))  # re-baselined: the controller's next plan is applied again
    assert actuator.external_changes == []
    assert len(k8s.pod_names(SPOT_DEP)) == 2


def test_adopts_a_deployment_from_the_manifests(k8s, actuator):
    k8s.add_deployment(deployment_manifest(WorkerTemplate(model="meta-llama/Llama-3.1-8B", pool=POOL, tier="spot",
                                                          name_model=MODEL, replicas=1)))
    assert [w.pool for w in actuator.observe()] == [POOL]
    actuator.apply(FleetPlan({SPOT: 2}))
    assert not [r for r in k8s.writes() if r.method == "POST"]
    assert actuator.external_changes == [] and len(k8s.pod_names(SPOT_DEP)) == 2


def test_api_error_is_one_line_actuator_error(k8s, actuator):
    actuator.apply(FleetPlan({SPOT: 1}))
    k8s.fail("PATCH", "/scale", 403)
    with pytest.raises(ActuatorError) as info:
        actuator.apply(FleetPlan({SPOT: 3}))
    message = str(info.value)
    assert "\n" not in message and SPOT_DEP in message and "HTTP 403" in message and "injected failure" in message
    k8s.fail("GET", "/pods", 500)
    with pytest.raises(ActuatorError, match=r"list pods in namespace 'default': HTTP 500"):
        actuator.observe()
    actuator.apply(FleetPlan({SPOT: 3}))  # the next step repairs it
    assert len(k8s.pod_names(SPOT_DEP)) == 3


def test_unreachable_server_is_actuator_error():
    from kubernetes import client

    with FakeK8s() as server:
        url = server.url
    configuration = client.Configuration()
    configuration.host = url  # closed: connection refused
    configuration.retries = 0
    act = KubernetesActuator(KubernetesConfig(request_timeout_s=2), configuration=configuration)
    with pytest.raises(ActuatorError, match="kubernetes: list pods") as info:
        act.observe()
    assert "\n" not in str(info.value)
    act.close()
