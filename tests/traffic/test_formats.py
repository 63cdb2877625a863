"""Format detection, file kinds and the column choice for traces and series."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetwise.errors import InputFormatError
from fleetwise.traffic import FORMATS, detect
from fleetwise.traffic.formats import series_columns, trace_columns
from fleetwise.traffic.tabular import file_kind

AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
BURSTGPT = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n"
MOONCAKE = '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}\n'
SERVEGEN = "0,1.3316666666666668,8.598383725990791,Weibull,0.3753486140101707,0.3967677807107179\n600,0,0,,0,0\n"
PROMETHEUS = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("azure.csv", AZURE, "azure"),
        ("burst.csv", BURSTGPT, "burstgpt"),
        ("mooncake.jsonl", MOONCAKE, "mooncake"),
        ("trace.csv", "arrival_time,prompt_tokens,completion_tokens\n0.5,10,3\n", "trace"),
        ("trace.jsonl", '{"time": 1.5, "isl": 10, "osl": 3}\n', "trace"),
        ("mooncake-like.csv", "timestamp,input_length,output_length\n0,1,2\n", "trace"),  # mooncake is JSONL only
        ("client.csv", SERVEGEN, "servegen"),
        ("series.csv", "time,value\n0,1.5\n", "series"),
        ("rps.csv", "ds,qps\n0,1.5\n", "series"),
        ("two.csv", "when,rate\n0,1.5\n", "series"),  # one known column of two says what the other is
        ("two-t.csv", "time,how_many\n0,1.5\n", "series"),
        ("rate.csv", "window_start_s,total_rate_rps,active_clients\n0,212.78,43\n", "series"),
        ("prom.json", PROMETHEUS, "prometheus"),
    ],
)
def test_detect(write, name, content, expected):
    assert detect(write(name, content)) == expected
    assert expected in FORMATS


def test_detect_parquet_trace(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ts": [0.0, 1.0], "input_tokens": [1, 2], "output_tokens": [3, 4]}), path)
    assert detect(path) == "trace"


def test_detect_directory_is_servegen(write):
    write("clients/chunk-0-trace.csv", SERVEGEN)
    assert detect(write("clients/chunk-1-trace.csv", SERVEGEN).parent) == "servegen"


@pytest.mark.parametrize("header", ["foo,bar", "when,how_many"])
def test_two_unknown_columns_are_not_a_series(write, header):
    """Neither column names a time or a value: an error naming the file, its columns and those expected."""
    path = write("unknown.csv", f"{header}\n1,2\n3,4\n5,6\n")
    a, b = header.split(",")
    with pytest.raises(InputFormatError, match=rf"unknown.csv.*'{a}', '{b}'.*'timestamp', 'rate_rps'.*--value-col"):
        detect(path)
    with pytest.raises(InputFormatError, match=rf"unknown.csv.*'{a}', '{b}'.*time column.*value column"):
        series_columns(path, None, None, None)  # --format series alone does not make them one
    assert series_columns(path, None, b, None).time == a  # one named column says what the other is


def test_detect_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match="no such file") as info:
        detect(tmp_path / "nope.csv")
    assert "nope.csv" in str(info.value)


def test_detect_unknown_columns_names_them(write):
    path = write("odd.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(InputFormatError) as info:
        detect(path)
    msg = str(info.value)
    assert "'a', 'b', 'c'" in msg and "--format" in msg and "odd.csv" in msg and "\n" not in msg


def test_detect_empty_file(write):
    with pytest.raises(InputFormatError, match="empty"):
        detect(write("empty.csv", ""))


def test_detect_jsonl_first_record_not_json(write):
    with pytest.raises(InputFormatError, match="not JSON") as info:
        detect(write("bad.jsonl", "hello\n"))
    assert info.value.line == 1


@pytest.mark.parametrize(
    ("name", "kind"),
    [("a.csv", "csv"), ("a.CSV.gz", "csv"), ("a.parquet", "parquet"), ("a.pq", "parquet"),
     ("a.jsonl", "jsonl"), ("a.ndjson.zst", "jsonl"), ("a.json", "json"), ("a.txt", "csv"), ("noext", "csv")],
)
def test_file_kind(name, kind):
    assert file_kind(Path(name)) == kind


def test_trace_columns_presets_and_overrides(write):
    moon = write("m.jsonl", MOONCAKE)
    cols = trace_columns(moon, "mooncake", None, None, None, None)
    assert (cols.time, cols.input, cols.output, cols.prefix, cols.time_unit_s) == (
        "timestamp", "input_length", "output_length", "hash_ids", 1e-3)
    cols = trace_columns(moon, "mooncake", None, None, None, 1.0)
    assert cols.time_unit_s == 1.0
    generic = write("g.csv", "t_ms,prompt,gen,prefix_ids\n1,2,3,4\n")
    cols = trace_columns(generic, "trace", "t_ms", "prompt", "gen", 1e-3)
    assert (cols.time, cols.input, cols.output, cols.prefix, cols.time_unit_s) == (
        "t_ms", "prompt", "gen", "prefix_ids", 1e-3)


def test_azure_preset_has_no_prefix(write):
    cols = trace_columns(write("a.csv", AZURE), "azure", None, None, None, None)
    assert cols.prefix is None and cols.time_unit_s == 1.0


def test_trace_columns_missing_role_named(write):
    path = write("g.csv", "time,input_tokens,whatever\n1,2,3\n")
    with pytest.raises(InputFormatError, match="no output tokens column") as info:
        trace_columns(path, "trace", None, None, None, None)
    assert "--output-col" in str(info.value)


def test_series_columns(write):
    cols = series_columns(write("s.csv", "ts,x,rps\n0,9,1\n"), None, None, None)
    assert (cols.time, cols.value, cols.time_unit_s) == ("ts", "rps", 1.0)
    cols = series_columns(write("two.csv", "when,rps\n0,1\n"), None, None, 1e-3)
    assert (cols.time, cols.value, cols.time_unit_s) == ("when", "rps", 1e-3)
    with pytest.raises(InputFormatError, match="--value-col"):
        series_columns(write("three.csv", "a,b,c\n1,2,3\n"), None, None, None)


def test_detect_csv_with_byte_order_mark(write):
    assert detect(write("excel.csv", "\ufeff" + AZURE)) == "azure"


def test_detect_gzipped_csv(write):
    import gzip

    assert detect(write("azure.csv.gz", gzip.compress(AZURE.encode()))) == "azure"


def test_servegen_root_resolves_to_its_one_client_folder_and_several_are_named(tmp_path):
    from fleetwise.errors import InputFormatError
    from fleetwise.traffic.load import load_series

    folder = tmp_path / "servegen" / "language" / "m-large"
    folder.mkdir(parents=True)
    for k in range(2):
        (folder / f"chunk-{k}-trace.csv").write_text(  # ServeGen's headerless six columns
            "".join(f"{600 * i},{1.0 + k},1.0,Exponential,0,0\n" for i in range(6)))
    (tmp_path / "servegen" / "LICENSE").write_text("license")
    series = load_series(tmp_path / "servegen", fmt="servegen")
    assert series.values.tolist() == [3.0] * 6  # the two clients summed
    (tmp_path / "servegen" / "reasoning" / "m-mid").mkdir(parents=True)
    (tmp_path / "servegen" / "reasoning" / "m-mid" / "chunk-0-trace.csv").write_text("0,1,1,Exponential,0,0\n")
    with pytest.raises(InputFormatError, match=r"holds 2 ServeGen client folders \(language/m-large, "
                                               r"reasoning/m-mid\); pass one of them"):
        load_series(tmp_path / "servegen", fmt="servegen")


def test_error_lines_escape_binary_headers_and_cap_long_lists():
    from fleetwise.errors import quote_input, some_of

    assert quote_input("\x00\x01\ufffdab") == "'???ab'"
    assert quote_input("x" * 100, 10) == "'xxxxxxxxxx...'"
    assert some_of(["a", "b"]) == "known: a, b"
    offers = [f"aws/us-east-1/p{k}.{s}" for k in range(5) for s in ("xlarge", "4xlarge", "48xlarge")]
    line = some_of(offers, "p4.4x", "offers")
    assert line.startswith("closest: ") and "15 known; list them with 'fleetwise catalog offers'" in line
    assert len(some_of(offers, "zzz", "offers")) < 200


def test_the_package_load_function_survives_importing_its_submodule():
    import subprocess
    import sys

    code = ("import fleetwise.traffic.load\nfrom fleetwise.traffic import load\nimport fleetwise.traffic as t\n"
            "assert callable(load) and callable(t.load), load\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_summary_page_shows_its_statistics_next_to_the_figure(tmp_path):
    from typer.testing import CliRunner

    from fleetwise.cli import _register, app

    _register()
    path = tmp_path / "t.csv"
    path.write_text("timestamp,input_tokens,output_tokens\n" + "".join(f"{k * 0.5},{100 + k},{20 + k % 7}\n"
                                                                     for k in range(400)))
    page = tmp_path / "s.html"
    res = CliRunner().invoke(app, ["traffic", "summarize", str(path), "--plot", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count("<table") == 3 and "<img" in text and "Token lengths" in text and ">400<" in text
