"""Rendered manifests checked against schemas, not by eye: Deployments through the ``kubernetes`` client's own
models (generated from the Kubernetes OpenAPI spec; unknown fields are rejected), the Karpenter NodePool and
KEDA ScaledObject (CRDs) against the JSON schemas in ``schemas/`` derived from their docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fleetwise.control.manifests import (
    DEFAULT_IMAGE,
    deployment_name,
    render_manifests,
    write_manifests,
)
from fleetwise.control.names import DESIRED_REPLICAS
from fleetwise.errors import ConfigError, InputFormatError

SCHEMAS = Path(__file__).parent / "schemas"

PLAN = {  # the shape of `fleetwise plan --json` (one candidate)
    "tier": "on_demand", "engine": "vllm",
    "candidates": [{"model": "llama-3.1-70b", "gpu": "h100-sxm", "num_gpus": 4, "tp": 4, "precision": "fp8",
                    "max_batch": 256, "goodput_rps": 12.5, "replicas": 3, "instances": 3, "usd_per_hour": 90.0,
                    "offer": "aws/us-east-1/p5.48xlarge", "cloud": "aws", "region": "us-east-1",
                    "instance_type": "p5.48xlarge", "tier": "on_demand", "verified": True}],
}
OPTIMIZE = {  # the shape of `fleetwise optimize --json`
    "reservations": [{"offer": "aws/us-east-1/p5.4xlarge", "term": "reserved_3y", "count": 2,
                      "break_even_utilization": 0.43}],
    "schedule": {"period_h": 1.0, "offers": ["aws/us-west-2/g6e.xlarge", "aws/us-east-1/p5.4xlarge"],
                 "spot": [[1, 3, 2], [0, 0, 0]], "on_demand": [[0, 0, 0], [0, 1, 0]], "demand_rps": [1, 2, 3]},
}


def deserialize(doc: dict, klass: str):
    """``doc`` as the client deserializes an API response into ``klass`` (a model generated from the OpenAPI
    spec: required fields and types are checked, unknown fields dropped - hence the round-trip comparison)."""
    from kubernetes.client import ApiClient

    return ApiClient().deserialize(json.dumps(doc), klass, "application/json")


def round_trip(doc: dict, klass: str) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(deserialize(doc, klass))


def validator(name: str):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("data, kwargs", [(PLAN, {}), (OPTIMIZE, {"model": "llama-3.1-8b"})], ids=["plan", "optimize"])
def test_deployments_match_the_kubernetes_openapi_models(data, kwargs):
    pytest.importorskip("kubernetes")
    docs = render_manifests(data, namespace="llm", **kwargs)
    deployments = by_kind(docs, "Deployment")
    assert deployments
    for doc in deployments:
        assert round_trip(doc, "V1Deployment") == doc  # nothing unknown dropped, nothing missing added
        dep = deserialize(doc, "V1Deployment")
        assert dep.metadata.namespace == "llm" and len(dep.metadata.name) <= 63
        assert dep.spec.selector.match_labels == dep.spec.template.metadata.labels
        container = dep.spec.template.spec.containers[0]
        assert container.image == DEFAULT_IMAGE
        assert container.readiness_probe.http_get.path == "/health"
        notes = dep.spec.template.metadata.annotations
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "8000"
    # the check has teeth: the client drops a field it does not know, so a misspelt one breaks the round trip
    misspelt = {**deployments[0], "spec": {**deployments[0]["spec"], "replicaz": 1}}
    assert round_trip(misspelt, "V1Deployment") != misspelt
    nameless = json.loads(json.dumps(deployments[0]))
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]  # required by the schema
    with pytest.raises(ValueError, match="name"):
        deserialize(nameless, "V1Deployment")


def test_plan_deployment_carries_the_planned_engine_config():
    docs = render_manifests(PLAN)
    (dep,) = by_kind(docs, "Deployment")
    assert dep["metadata"]["name"] == deployment_name("llama-3.1-70b", "aws/us-east-1/p5.48xlarge", "on_demand")
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[0] == "meta-llama/Llama-3.1-70B"  # the catalog's Hugging Face id
    for flag, value in (("--tensor-parallel-size", "4"), ("--max-num-seqs", "256"), ("--quantization", "fp8")):
        assert args[args.index(flag) + 1] == value
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "4"}
    assert pod["nodeSelector"] == {"karpenter.sh/capacity-type": "on-demand", "fleetwise.dev/tier": "on_demand",
                                   "node.kubernetes.io/instance-type": "p5.48xlarge"}


def test_optimize_renders_one_deployment_per_offer_and_tier():
    docs = render_manifests(OPTIMIZE, model="llama-3.1-8b")
    deps = {(d["metadata"]["annotations"]["fleetwise.dev/pool-id"], d["metadata"]["labels"]["fleetwise.dev/tier"]):
            d for d in by_kind(docs, "Deployment")}
    assert set(deps) == {("aws/us-west-2/g6e.xlarge", "spot"), ("aws/us-east-1/p5.4xlarge", "on_demand"),
                         ("aws/us-east-1/p5.4xlarge", "reserved")}
    assert deps[("aws/us-east-1/p5.4xlarge", "reserved")]["spec"]["replicas"] == 2
    reserved_pod = deps[("aws/us-east-1/p5.4xlarge", "reserved")]["spec"]["template"]["spec"]
    assert reserved_pod["nodeSelector"]["karpenter.sh/capacity-type"] == "on-demand"
    assert reserved_pod["nodeSelector"]["fleetwise.dev/tier"] == "reserved"
    assert [p["spec"]["template"]["metadata"]["labels"]["fleetwise.dev/tier"] for p in by_kind(docs, "NodePool")] \
        == ["reserved", "on_demand", "spot"]
    odcr = render_manifests(OPTIMIZE, model="llama-3.1-8b", reserved_capacity_type="reserved")
    assert by_kind(odcr, "NodePool")[0]["spec"]["template"]["spec"]["requirements"][0]["values"] == ["reserved"]


@pytest.mark.parametrize("data, kwargs", [(PLAN, {}), (OPTIMIZE, {"model": "llama-3.1-8b"})], ids=["plan", "optimize"])
def test_node_pools_and_scaled_objects_match_their_crd_schemas(data, kwargs):
    docs = render_manifests(data, **kwargs)
    pools, scaled = validator("karpenter_nodepool_v1.json"), validator("keda_scaledobject_v1alpha1.json")
    for doc in by_kind(docs, "NodePool"):
        assert not [e.message for e in pools.iter_errors(doc)]
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert len(by_kind(docs, "ScaledObject")) == len(deployments)
    for doc in by_kind(docs, "ScaledObject"):
        assert not [e.message for e in scaled.iter_errors(doc)]
        dep = deployments[doc["spec"]["scaleTargetRef"]["name"]]
        pool = dep["metadata"]["annotations"]["fleetwise.dev/pool-id"]
        tier = dep["metadata"]["labels"]["fleetwise.dev/tier"]
        assert doc["spec"]["triggers"][0]["metadata"]["query"] == \
            f'max({DESIRED_REPLICAS}{{pool="{pool}",tier="{tier}"}})'
    # the schemas do catch mistakes
    bad = by_kind(docs, "NodePool")[0]
    broken = json.loads(json.dumps(bad))
    del broken["spec"]["template"]["spec"]["nodeClassRef"]["group"]
    assert list(pools.iter_errors(broken))


def test_write_manifests_is_multi_document_yaml(tmp_path):
    docs = render_manifests(OPTIMIZE, model="llama-3.1-8b")
    path = write_manifests(docs, tmp_path / "k8s.yaml")
    assert list(yaml.safe_load_all(path.read_text())) == docs
    assert not [p for p in tmp_path.iterdir() if p.name != "k8s.yaml"]  # no temporary file left


@pytest.mark.parametrize("data, field", [
    ({"foo": 1}, "candidates"),
    ({"candidates": []}, "candidates"),
    ({"candidates": [{**PLAN["candidates"][0], "tp": "four"}]}, "candidates.0.tp"),
    ({"candidates": [{k: v for k, v in PLAN["candidates"][0].items() if k != "offer"}]}, "candidates.0.offer"),
    ({"schedule": {"offers": ["aws/us-east-1/p5.4xlarge"], "spot": [[1]], "on_demand": [[-1]]}},
     "schedule.on_demand.0.0"),
    ({"schedule": {"offers": ["nope/x/y"], "spot": [[1]], "on_demand": [[0]]}}, "schedule.offers"),
])
def test_bad_plan_json_names_file_and_field(data, field):
    with pytest.raises(InputFormatError) as info:
        render_manifests(data, model="llama-3.1-8b", source="opt.json")
    assert info.value.file == "opt.json" and info.value.field == field
    assert str(info.value).startswith("opt.json: ") and "\n" not in str(info.value)


def test_optimize_needs_a_model():
    with pytest.raises(ConfigError, match="model"):
        render_manifests(OPTIMIZE)
