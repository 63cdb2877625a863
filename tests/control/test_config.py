"""control.yaml: validated with the file, line and field in every error; the command line wins over it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from fleetwise.control.config import load_control_file
from fleetwise.errors import ConfigError


def test_a_good_file_gives_the_options_it_sets(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("mode: active\nmodel: llama-3.1-70b\ngpus: 2\ninitial: {on_demand: 2, spot: 1}\n"
                 "ttft_p95_ms: 800\nbudget_usd_per_hour: 50.5\n")
    assert load_control_file(f) == {"mode": "active", "model": "llama-3.1-70b", "gpus": 2,
                                     "initial": "on_demand=2,spot=1", "ttft_p95_ms": 800.0,
                                     "budget_usd_per_hour": 50.5}
    (tmp_path / "empty.yaml").write_text("")
    assert load_control_file(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("mode: active\ngpus: 0\n", 2, "gpus", "greater than 0"),
    ("mode: active\n\nturbo: yes\n", 3, "turbo", "unknown field"),
    ("mode: yolo\n", 1, "mode", "advisory"),
    ("initial: {gpu: 2}\n", 1, "initial", ""),
    ("interval: .nan\n", 1, "interval", ""),
    ("gpus: '2'\n", 1, "gpus", "integer"),
])
def test_bad_values_name_the_line_and_field(tmp_path, text, line, field, message):
    f = tmp_path / "control.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_control_file(f)
    assert err.value.line == line and err.value.field.startswith(field) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_not_yaml_or_not_a_mapping(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("mode: [active\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_control_file(f)
    f.write_text("- active\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_control_file(f)


def test_command_line_options_win_over_the_file(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("mode: active\nmodel: llama-3.1-70b\ngpus: 2\nactuator: webhook\n"
                 "webhook_url: http://127.0.0.1:9/plan\nmetrics: scrape:http://127.0.0.1:9\n")
    proc = subprocess.Popen([sys.executable, "-m", "fleetwise", "control", "--config", str(f), "--mode", "noop",
                             "--port", "0", "--store", str(tmp_path / "c.db")],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert "noop mode" in line and "webhook actuator" in line and "llama-3.1-70b on 2x" in line
    assert proc.returncode in (0, -signal.SIGTERM)


def test_a_bad_file_stops_the_command_with_one_line(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("port: 70000\n")
    out = subprocess.run([sys.executable, "-m", "fleetwise", "control", "--config", str(f)], check=False,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "control.yaml:1: field 'port'" in out.stderr
