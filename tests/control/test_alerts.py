"""The shipped alert rules and Grafana dashboard: valid for Prometheus, exercised by promtool's rule unit
tests, and written against the metric names the controller exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleetwise.control import names

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared services helper
from services import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "src" / "fleetwise" / "control" / "deploy"
ALERTS = DEPLOY / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana.json"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")

# PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require("promtool", "Debian/Ubuntu: apt-get install prometheus")


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], check=False, capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def exported_names() -> set[str]:
    """Every series name the controller's metrics appear under in Prometheus."""
    out = set()
    for value in vars(names).values():
        if isinstance(value, str) and value.startswith("fleetwise_"):
            out.add(value)
    out |= {names.STEP_SECONDS + s for s in ("_bucket", "_sum", "_count")}
    return out


def metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that are metric names (not functions, keywords, labels)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b\d[\w.]*", "", expr)  # numbers and durations (0.95, 1e3, 5m)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    found = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group()
        rest = expr[m.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("(") or expr[m.start() - 1: m.start()] in ("$", "."):
            continue
        found.add(word)
    return found


def test_metric_names_helper_finds_names_only():
    expr = ('histogram_quantile(0.95, sum by (loop, le) (rate(fleetwise_x_bucket{job=~"$job", a="b c"}[5m])))'
            ' / on (job) group_left max(vllm:num_requests_waiting offset 5m) > bool 1e3')
    assert metric_names(expr) == {"fleetwise_x_bucket", "vllm:num_requests_waiting"}


def test_alert_rules_are_valid(promtool):
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_cover_every_alert_firing_and_quiet():
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


def test_alerts_have_severity_and_annotations():
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_alert_rules_use_exported_metric_names():
    rules = yaml.safe_load(ALERTS.read_text())
    allowed = exported_names() | {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    allowed.add("up")
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= allowed, rule.get("alert") or rule.get("record")


def dashboard_targets(dash: dict) -> list[tuple[dict, dict]]:
    return [(p, t) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_has_the_panels_operators_need():
    dash = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(t["expr"]) for _, t in dashboard_targets(dash)))
    for name in (names.DESIRED_REPLICAS, names.CURRENT_REPLICAS, names.DEMAND_RPS, names.CAPACITY_RPS,
                 names.FORECAST_RPS, names.FLEET_COST, names.BUDGET, names.TTFT_P95, names.ITL_P95,
                 names.SLO_TARGET, names.SLO_ATTAINMENT, names.SPOT_NOTICES, names.DECISIONS):
        assert name in used, name
    assert any(n.startswith(names.STEP_SECONDS) for n in used)


def test_dashboard_queries_use_known_metric_names():
    dash = json.loads(DASHBOARD.read_text())
    allowed = exported_names()
    for panel, target in dashboard_targets(dash):
        unknown = {n for n in metric_names(target["expr"]) if not n.startswith("vllm:")} - allowed
        assert not unknown, f"panel {panel['title']!r} uses {sorted(unknown)}"


def test_dashboard_queries_parse(promtool, tmp_path):
    """Every panel query is valid PromQL once Grafana's variables are substituted (promtool parses it)."""
    dash = json.loads(DASHBOARD.read_text())
    rules = [{"record": f"dashboard:panel{p['id']}:{t['refId']}",
              "expr": t["expr"].replace("$__rate_interval", "1m").replace("$job", ".*")}
             for p, t in dashboard_targets(dash)]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
