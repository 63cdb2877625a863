"""gateway.yaml: validated, every error one line with the file, line and field; keys kept only as hashes."""

from __future__ import annotations

import pytest

from fleetwise.errors import ConfigError
from fleetwise.gateway.config import hash_key, load_gateway_file
from fleetwise.gateway.service import gateway_file

GOOD = """\
backends: {llama-3.1-8b: [http://127.0.0.1:8001], llama-3.1-70b: [http://127.0.0.1:8002]}
prices_usd_per_1m_tokens: {llama-3.1-8b: {input: 0.05, output: 0.20}}
routes: {auto: {cheap: llama-3.1-8b, strong: llama-3.1-70b, threshold: 0.42}}
tenants:
  - {name: acme, api_keys: [sk-acme-1111], budget_usd_per_day: 50, priority: interactive, cache_scope: acme}
  - {name: beta, api_key_hashes: [HASH], priority: batch}
""".replace("HASH", hash_key("sk-beta-2222"))


def test_the_issue_example_loads(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text(GOOD)
    cfg = load_gateway_file(f)
    acme, beta = (t.tenant() for t in cfg.tenants)
    assert acme.key_hashes == {hash_key("sk-acme-1111")} and "sk-acme-1111" not in repr(acme)
    assert beta.key_hashes == {hash_key("sk-beta-2222")} and beta.cache_scope == "beta"
    assert cfg.routes["auto"].threshold == 0.42


@pytest.mark.parametrize(("text", "line", "field"), [
    ("backends: {m: []}\n", 1, "backends"),
    ("backends: {m: [ftp://x]}\n", 1, "backends.m.0"),
    ("tenants:\n  - {name: a}\n  - {name: b, priority: vip}\n", 3, "tenants.1.priority"),
    ("tenants:\n  - {name: a, budget_usd_per_day: -5}\n", 2, "tenants.0.budget_usd_per_day"),
    ("cache: {ttl_s: 60, size: 5}\n", 1, "cache.size"),
    ("routes: {auto: {cheap: x, strong: y, threshold: 2}}\n", 1, "routes.auto.threshold"),
])
def test_bad_entries_name_line_and_field(tmp_path, text, line, field):
    f = tmp_path / "gateway.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_gateway_file(f)
    assert err.value.line == line and err.value.field == field and "\n" not in str(err.value)


def test_inconsistent_files_are_refused(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text("tenants:\n  - {name: a, api_keys: [sk-same-key1]}\n  - {name: b, api_keys: [sk-same-key1]}\n")
    with pytest.raises(ConfigError, match="two tenants"):
        load_gateway_file(f)
    f.write_text("backends: {m: [http://127.0.0.1:1]}\nroutes: {auto: {cheap: m, strong: z}}\n")
    with pytest.raises(ConfigError, match="no backend"):
        load_gateway_file(f)


def test_backend_options_add_to_the_file(tmp_path):
    f = tmp_path / "gateway.yaml"
    f.write_text("backends: {m: [http://127.0.0.1:1]}\n")
    cfg = gateway_file(f, ["m=http://127.0.0.1:2/", "n=http://127.0.0.1:3"])
    assert cfg.backends == {"m": ["http://127.0.0.1:1", "http://127.0.0.1:2"], "n": ["http://127.0.0.1:3"]}
    with pytest.raises(ConfigError, match="NAME=URL"):
        gateway_file(None, ["no-equals-sign"])


def test_a_route_may_use_a_trained_classifier(tmp_path):
    from fleetwise.gateway.app import Gateway
    from fleetwise.gateway.router import ClassifierScorer

    easy = [{"messages": [{"role": "user", "content": "hi"}]}] * 4
    hard = [{"messages": [{"role": "user", "content": "```python\ndef f(x):\n  return x**2\n```\nprove it, step by "
                                                         "step, then solve $x^2=4$"}]}] * 4
    model = ClassifierScorer().fit(easy + hard, [0] * 4 + [1] * 4)
    model.save(tmp_path / "clf.json")
    f = tmp_path / "gateway.yaml"
    f.write_text("backends: {a: [http://127.0.0.1:1], b: [http://127.0.0.1:2]}\n"
                 f"routes: {{auto: {{cheap: a, strong: b, scorer: classifier, classifier: {tmp_path}/clf.json}}}}\n")
    gw = Gateway.build(load_gateway_file(f))
    assert gw.router["auto"].choose(hard[0])[0] == "b" and gw.router["auto"].choose(easy[0])[0] == "a"
    f.write_text("backends: {a: [http://127.0.0.1:1]}\nroutes: {auto: {cheap: a, strong: a, scorer: classifier}}\n")
    with pytest.raises(ConfigError, match="classifier"):
        load_gateway_file(f)
