"""Loaders: every trace and series format, bad-row accounting with file line numbers, sorting, time zones,
gap handling, and the real sample traces in ../shared/data/traces (skipped when absent)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic import (
    RateSeries,
    RequestTrace,
    load,
    load_as_series,
    load_series,
    load_trace,
)
from tests.shared_data import shared

T0 = datetime(2023, 11, 16, 18, 15, 46, tzinfo=UTC).timestamp()  # 1_700_158_546
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE = AZURE_HEADER + (
    "2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:50.9951690,396,109\n"
    "2023-11-16 18:16:01.0000000,1200,7\n"
)
# line 1 header, 2-3 good, 4 negative, 5 blank, 6 non-numeric, 7 extra field, 8 bad time, 9 good
AZURE_BAD = AZURE_HEADER + (
    "2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:50.9951690,396,109\n"
    "2023-11-16 18:15:51.0,-3,5\n"
    "\n"
    "2023-11-16 18:15:52.0,x,5\n"
    "2023-11-16 18:15:53.0,1,2,3\n"
    "not-a-time,4,5\n"
    "2023-11-16 18:15:54.0,7,8\n"
)
AZURE_BAD_FIRST = (
    "line 4: field 'ContextTokens': bad value '-3'",
    "line 6: field 'ContextTokens': bad value 'x'",
    "line 7: wrong number of fields: '2023-11-16 18:15:53.0,1,2,3'",
)
MOONCAKE = (
    '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}\n'
    '{"timestamp": 1500, "input_length": 7322, "output_length": 490, "hash_ids": [0, 14]}\n'
    '{"timestamp": 1500, "input_length": 12, "output_length": 3, "hash_ids": []}\n'
    '{"timestamp": 4250, "input_length": 2290, "output_length": 316, "hash_ids": [0, 42, 43, 44]}\n'
)

DATA = shared("traces")
AZURE_CONV = DATA / "azure_llm_conv_2023.csv"
AZURE_CODE = DATA / "azure_llm_code_2023.csv"
MOONCAKE_REAL = DATA / "mooncake_conversation.jsonl"
SERVEGEN_RATE = DATA / "servegen_m-large_rate_10min.csv"
SERVEGEN_DIR = DATA / "servegen" / "language" / "m-large"


def _absent(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"sample data {path} is not available")


def _prom(*value_lists, result_type="matrix") -> str:
    result = [{"metric": {"pod": f"p{k}"}, "values": v} for k, v in enumerate(value_lists)]
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}})


# ---- trace formats ------------------------------------------------------------------------------------------


def test_azure_csv(write):
    trace = load_trace(write("azure.csv", AZURE))
    assert isinstance(trace, RequestTrace) and trace.epoch is True
    assert trace.arrival_s.tolist() == pytest.approx([T0 + 0.68059, T0 + 4.995169, T0 + 15.0], abs=1e-5)
    assert trace.input_tokens.tolist() == [374, 396, 1200]
    assert trace.output_tokens.tolist() == [44, 109, 7]
    assert trace.input_tokens.dtype == np.int64 and trace.prefix_offsets is None
    assert trace.source.startswith("azure:")
    assert trace.report.rows == 3 and trace.report.bad_rows == 0 and trace.report.sorted_rows is False


def test_burstgpt_csv(write):
    text = (
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45.5,GPT-4,1087,0,1087,Conversation log\n"
        "118,ChatGPT,417,276,693,API log\n"
    )
    trace = load_trace(write("burst.csv", text))
    assert trace.source.startswith("burstgpt:") and trace.epoch is False
    assert trace.arrival_s.tolist() == [5.0, 45.5, 118.0]
    assert trace.input_tokens.tolist() == [472, 1087, 417]
    assert trace.output_tokens.tolist() == [18, 0, 276]


def test_mooncake_jsonl_ms_and_prefix_csr(write):
    trace = load_trace(write("mooncake.jsonl", MOONCAKE))
    assert trace.source.startswith("mooncake:") and trace.epoch is False
    assert trace.arrival_s.tolist() == [0.0, 1.5, 1.5, 4.25]  # milliseconds -> seconds
    assert trace.input_tokens.tolist() == [6758, 7322, 12, 2290]
    assert trace.output_tokens.tolist() == [500, 490, 3, 316]
    assert trace.prefix_offsets.tolist() == [0, 3, 5, 5, 9]
    assert [trace.prefix(i).tolist() for i in range(4)] == [[0, 1, 2], [0, 14], [], [0, 42, 43, 44]]


def test_mooncake_time_unit_override(write):
    trace = load_trace(write("mooncake.jsonl", MOONCAKE), time_unit_s=1.0)
    assert trace.arrival_s.tolist() == [0.0, 1500.0, 1500.0, 4250.0]


def test_generic_csv_with_column_mapping(write):
    path = write("mine.csv", "t_ms,prompt,gen,user\n2000,10,1,a\n500,20,2,b\n1000,30,3,c\n")
    trace = load_trace(path, fmt="trace", time_col="t_ms", input_col="prompt", output_col="gen", time_unit_s=1e-3)
    assert trace.arrival_s.tolist() == [0.5, 1.0, 2.0]
    assert trace.input_tokens.tolist() == [20, 30, 10]
    assert trace.output_tokens.tolist() == [2, 3, 1]
    assert trace.source.startswith("trace:")


def test_generic_csv_aliases_auto(write):
    path = write("t.csv", "arrival_time,prompt_tokens,completion_tokens\n0.25,10,1\n0.75,20,2\n")
    trace = load_trace(path)
    assert trace.arrival_s.tolist() == [0.25, 0.75] and trace.input_tokens.tolist() == [10, 20]


def test_generic_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"when": [2.0, 0.0, 1.0], "a": [1, 2, 3], "b": [4, 5, 6]}), path)
    trace = load_trace(path, fmt="trace", time_col="when", input_col="a", output_col="b", time_unit_s=60.0)
    assert trace.arrival_s.tolist() == [0.0, 60.0, 120.0]
    assert trace.input_tokens.tolist() == [2, 3, 1] and trace.output_tokens.tolist() == [5, 6, 4]
    assert trace.report.sorted_rows is True


def test_parquet_timestamp_column_is_epoch(tmp_path):
    path = tmp_path / "t.parquet"
    ts = pa.array([0, 500_000_000, 2_000_000_000], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"ts": ts, "input_tokens": [1, 2, 3], "output_tokens": [4, 5, 6]}), path)
    trace = load_trace(path)
    assert trace.epoch is True and trace.arrival_s.tolist() == [0.0, 0.5, 2.0]


def test_parquet_bad_row_is_described_by_row(tmp_path):
    path = tmp_path / "neg.parquet"
    pq.write_table(pa.table({"ts": [0.0, 1.0, 2.0], "input_tokens": [1, -2, 3], "output_tokens": [1, 1, 1]}), path)
    trace = load_trace(path, max_bad_rows=1)
    assert len(trace) == 2 and trace.report.bad_rows == 1
    assert trace.report.first_bad == ("row 2: field 'input_tokens': bad value '-2'",)


def test_generic_jsonl_with_column_mapping(write):
    path = write("t.jsonl", '{"at": 3, "in": 5, "out": 6}\n{"at": 1, "in": 7, "out": 8}\n')
    trace = load_trace(path, fmt="trace", time_col="at", input_col="in", output_col="out")
    assert trace.arrival_s.tolist() == [1.0, 3.0] and trace.input_tokens.tolist() == [7, 5]


def test_auto_format_with_user_column_names(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"when": [0.0, 1.0], "a": [1, 2], "b": [3, 4]}), path)
    trace = load(path, time_col="when", input_col="a", output_col="b")
    assert trace.input_tokens.tolist() == [1, 2]


# ---- bad input ----------------------------------------------------------------------------------------------


def test_bad_rows_counted_with_line_numbers(write):
    trace = load_trace(write("azure.csv", AZURE_BAD), max_bad_rows=10)
    assert len(trace) == 3
    assert trace.input_tokens.tolist() == [374, 396, 7]
    assert trace.report.rows == 7  # six parsed data rows + one rejected line; the blank line is not a row
    assert trace.report.bad_rows == 4
    assert trace.report.first_bad == AZURE_BAD_FIRST


def test_bad_time_line_number_after_blank_lines(write):
    text = "time,input_tokens,output_tokens\n0,1,1\n\n\n1,2,2\nyesterday,3,3\n4,4,4\n"
    trace = load_trace(write("t.csv", text), max_bad_rows=1)
    assert trace.report.first_bad == ("line 6: field 'time': bad value 'yesterday'",)
    assert trace.arrival_s.tolist() == [0.0, 1.0, 4.0]


def test_bad_row_far_down_the_file(write):
    body = "".join(f"{i},1,1\n" for i in range(100))
    text = "time,input_tokens,output_tokens\n" + body + "100,1,-1\n\n\n101,x,1\n102,1,1\n"
    trace = load_trace(write("t.csv", text), max_bad_rows=2)
    assert len(trace) == 101 and trace.report.rows == 103 and trace.report.bad_rows == 2
    assert trace.report.first_bad == (
        "line 102: field 'output_tokens': bad value '-1'", "line 105: field 'input_tokens': bad value 'x'")


def test_too_few_fields(write):
    trace = load_trace(write("t.csv", "time,input_tokens,output_tokens\n0,1,1\n2,3\n3,1,1\n"), max_bad_rows=1)
    assert trace.report.first_bad == ("line 3: wrong number of fields: '2,3'",)
    assert trace.arrival_s.tolist() == [0.0, 3.0]


def test_crlf_line_numbers(write):
    text = AZURE.replace("\n", "\r\n") + "2023-11-16 18:16:02.0,1,2,3\r\n2023-11-16 18:16:03.0,-1,2\r\n"
    trace = load_trace(write("crlf.csv", text), max_bad_rows=2)
    assert len(trace) == 3 and trace.report.bad_rows == 2
    assert trace.report.first_bad == (
        "line 5: wrong number of fields: '2023-11-16 18:16:02.0,1,2,3'",
        "line 6: field 'ContextTokens': bad value '-1'",
    )


def test_only_first_three_bad_rows_described(write):
    text = "time,input_tokens,output_tokens\n" + "".join(f"{i},-1,1\n" for i in range(6)) + "9,1,1\n"
    trace = load_trace(write("t.csv", text), max_bad_rows=6)
    assert trace.report.bad_rows == 6
    assert [d.split(":")[0] for d in trace.report.first_bad] == ["line 2", "line 3", "line 4"]


def test_first_bad_are_the_earliest_lines(write):
    # the bad time on line 6 is found first (time is parsed first) but lines 2-4 come earlier in the file
    text = "time,input_tokens,output_tokens\n0,-1,1\n1,-1,1\n2,-1,1\n3,1,1\nlater,1,1\n5,1,1\n"
    trace = load_trace(write("t.csv", text), max_bad_rows=4)
    assert trace.report.bad_rows == 4
    assert [d.split(":")[0] for d in trace.report.first_bad] == ["line 2", "line 3", "line 4"]


def test_too_many_bad_rows_fraction(write):
    path = write("azure.csv", AZURE_BAD)
    with pytest.raises(InputFormatError) as info:
        load_trace(path)  # default: 1 % of the rows
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: 4 bad row(s) of 7 exceed --max-bad-rows 0.01; first: ")
    assert msg.endswith("; ".join(AZURE_BAD_FIRST))
    with pytest.raises(InputFormatError, match="exceed --max-bad-rows 0.5"):
        load_trace(path, max_bad_rows=0.5)  # 4 > 0.5 * 7
    assert len(load_trace(path, max_bad_rows=0.6)) == 3  # 4 <= 0.6 * 7


def test_too_many_bad_rows_count(write):
    path = write("azure.csv", AZURE_BAD)
    with pytest.raises(InputFormatError, match=r"4 bad row\(s\) of 7 exceed --max-bad-rows 3;"):
        load_trace(path, max_bad_rows=3)
    assert load_trace(path, max_bad_rows=4).report.bad_rows == 4


def test_negative_max_bad_rows_rejected(write):
    with pytest.raises(ConfigError, match="bad-row allowance"):
        load_trace(write("azure.csv", AZURE), max_bad_rows=-1)


def test_missing_column_is_named(write):
    path = write("a.csv", "TIMESTAMP,ContextTokens,Generated\n2023-11-16 18:15:46,1,2\n")
    with pytest.raises(InputFormatError) as info:
        load_trace(path, fmt="azure")
    msg = str(info.value)
    assert msg.startswith(f"{path}:1: missing column(s) 'GeneratedTokens';")
    assert "'Generated'" in msg


def test_missing_field_jsonl_and_parquet(write, tmp_path):
    path = write("m.jsonl", '{"timestamp": 0, "input_length": 1}\n')
    with pytest.raises(InputFormatError, match="missing field.*'output_length'"):
        load_trace(path, fmt="mooncake")
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ts": [0.0], "input_tokens": [1], "output_tokens": [1]}), pq_path)
    with pytest.raises(InputFormatError, match="missing column.*'gen'"):
        load_trace(pq_path, fmt="trace", output_col="gen")


def test_empty_file(write):
    with pytest.raises(InputFormatError, match="the file is empty"):
        load_trace(write("empty.csv", ""))
    with pytest.raises(InputFormatError, match="the file is empty"):
        load_trace(write("empty.jsonl", ""), fmt="mooncake")


def test_header_only_and_all_bad(write):
    with pytest.raises(InputFormatError, match="no usable rows"):
        load_trace(write("h.csv", AZURE_HEADER))
    with pytest.raises(InputFormatError, match="no usable rows"):
        load_trace(write("b.csv", AZURE_HEADER + "x,1,1\ny,2,2\n"), max_bad_rows=5)


def test_unsorted_rows_are_sorted_with_their_lengths(write):
    text = "time,input_tokens,output_tokens\n30,3,300\n10,1,100\n20,2,200\n10,4,400\n"
    trace = load_trace(write("t.csv", text))
    assert trace.arrival_s.tolist() == [10.0, 10.0, 20.0, 30.0]
    assert trace.input_tokens.tolist() == [1, 4, 2, 3]  # stable: the two t=10 rows keep file order
    assert trace.output_tokens.tolist() == [100, 400, 200, 300]
    assert trace.report.sorted_rows is True
    assert "timestamps were not in order; sorted them" in trace.report.warnings()


def test_unsorted_mooncake_keeps_prefixes_attached(write):
    text = (
        '{"timestamp": 3000, "input_length": 5, "output_length": 3, "hash_ids": [1, 2]}\n'
        "\n"
        '{"timestamp": 1000, "input_length": 6, "output_length": 4, "hash_ids": [7]}\n'
        '{"timestamp": 2000, "input_length": -7, "output_length": 3, "hash_ids": [4]}\n'
        '{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [4, 5, 6]}\n'
    )
    trace = load_trace(write("m.jsonl", text), max_bad_rows=1)
    assert trace.report.sorted_rows is True and trace.report.bad_rows == 1
    assert trace.report.first_bad == ("line 4: field 'input_length': bad value '-7'",)
    assert trace.arrival_s.tolist() == [0.0, 1.0, 3.0]
    assert trace.input_tokens.tolist() == [8, 6, 5]
    assert [trace.prefix(i).tolist() for i in range(3)] == [[4, 5, 6], [7], [1, 2]]
    assert trace.prefix_offsets.tolist() == [0, 3, 4, 6]


def test_jsonl_malformed_line_is_a_bad_row(write):
    text = (
        '{"timestamp": 0, "input_length": 5, "output_length": 3, "hash_ids": [1]}\n'
        "not json\n"
        '{"timestamp": 1000, "input_length": 6, "output_length": 4, "hash_ids": [2]}\n'
    )
    trace = load_trace(write("m.jsonl", text), max_bad_rows=1)
    assert len(trace) == 2 and trace.report.bad_rows == 1 and trace.report.rows == 3
    assert trace.report.first_bad[0].startswith("line 2: ")
    assert [trace.prefix(i).tolist() for i in range(2)] == [[1], [2]]


def test_jsonl_malformed_line_description(write):
    text = '{"timestamp": 0, "input_length": 5, "output_length": 3}\nnot json\n'
    trace = load_trace(write("m.jsonl", text), max_bad_rows=1)
    assert "wrong number of fields" not in trace.report.first_bad[0]
    assert "JSON" in trace.report.first_bad[0]


def test_jsonl_non_numeric_token_is_a_bad_row(write):
    text = (
        '{"timestamp": 0, "input_length": 5, "output_length": 3}\n'
        '{"timestamp": 1000, "input_length": "x", "output_length": 3}\n'
        '{"timestamp": 2000, "input_length": 7, "output_length": 3}\n'
    )
    trace = load_trace(write("m.jsonl", text), max_bad_rows=1)
    assert trace.input_tokens.tolist() == [5, 7] and trace.report.bad_rows == 1


def test_csv_cells_with_spaces_after_commas(write):
    trace = load_trace(write("t.csv", "time,input_tokens,output_tokens\n0, 10, 2\n1, 20, 3\n"))
    assert trace.input_tokens.tolist() == [10, 20]


def test_csv_header_with_spaces_after_commas(write):
    trace = load_trace(write("t.csv", "time, input_tokens, output_tokens\n0,10,2\n1,20,3\n"))
    assert trace.input_tokens.tolist() == [10, 20]


def test_whitespace_only_line_is_skipped_like_an_empty_line(write):
    trace = load_trace(write("t.csv", "time,input_tokens,output_tokens\n0,1,1\n   \n1,2,2\n"), max_bad_rows=1)
    assert len(trace) == 2
    assert trace.report.bad_rows == 0


def test_gzipped_csv_trace(write):
    trace = load_trace(write("azure.csv.gz", gzip.compress(AZURE.encode())))
    assert trace.input_tokens.tolist() == [374, 396, 1200]


def test_csv_with_byte_order_mark(write):
    trace = load_trace(write("azure.csv", "\ufeff" + AZURE))
    assert len(trace) == 3


def test_time_zones_honoured(write):
    text = (
        "time,input_tokens,output_tokens\n"
        "2023-11-16T18:00:00Z,1,1\n"
        "2023-11-16T19:00:10+01:00,2,2\n"  # = 18:00:10 UTC
        "2023-11-16 18:00:05,3,3\n"  # naive = UTC
        "2023-11-16T12:59:50-05:00,4,4\n"  # = 17:59:50 UTC
    )
    trace = load_trace(write("tz.csv", text))
    start = datetime(2023, 11, 16, 18, 0, tzinfo=UTC).timestamp()
    assert trace.epoch is True and trace.report.sorted_rows is True
    assert (trace.arrival_s - start).tolist() == pytest.approx([-10.0, 0.0, 5.0, 10.0])
    assert trace.input_tokens.tolist() == [4, 1, 3, 2]


def test_load_trace_refuses_a_series(write):
    with pytest.raises(InputFormatError, match="rate series"):
        load_trace(write("s.csv", "time,value\n0,1\n60,2\n"))


# ---- series formats -----------------------------------------------------------------------------------------


def test_servegen_client_file(write):
    text = "0,1.5,2.0,Gamma,1,1\n600,0.5,1.0,Weibull,0.3,0.4\n1200,0,0,,0,0\n1800,2.5,1.0,Gamma,1,1\n"
    series = load_series(write("chunk-0-trace.csv", text), detect_gaps=False)
    assert isinstance(series, RateSeries)
    assert (series.start_s, series.period_s, series.epoch) == (0.0, 600.0, False)
    assert series.values.tolist() == [1.5, 0.5, 0.0, 2.5]
    assert series.report.rows == 4


def test_servegen_directory_sums_clients(write):
    write("m/chunk-0-trace.csv", "0,1.0,1.0,Gamma,1,1\n600,2.0,1.0,Gamma,1,1\n1200,3.0,1,Gamma,1,1\n")
    write("m/chunk-1-trace.csv", "0,0.5,1.0,Gamma,1,1\n600,0,0,,0,0\n1200,0.25,1,Gamma,1,1\n")
    write("m/chunk-2-trace.csv", "0,0.1,1.0,Gamma,1,1\n600,0.1,1,Gamma,1,1\n")  # ends early
    series = load_series(write("m/LICENSE", "not a client file\n").parent)
    assert series.period_s == 600.0 and series.start_s == 0.0
    assert series.values.tolist() == pytest.approx([1.6, 2.1, 3.25])
    assert series.source.endswith("(3 clients)")


def test_servegen_empty_directory(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(InputFormatError, match="no ServeGen client files"):
        load_series(tmp_path / "none")


def test_servegen_directory_reports_bad_rows_of_every_file(write):
    write("m/chunk-0-trace.csv", "0,1.0,1.0,Gamma,1,1\n600,2.0,1.0,Gamma,1,1\n1200,3.0,1,Gamma,1,1\n")
    path = write("m/chunk-1-trace.csv", "0,0.5,1.0,Gamma,1,1\n600,x,1.0,Gamma,1,1\n1200,0.25,1,Gamma,1,1\n")
    series = load_series(path.parent, max_bad_rows=1)
    assert series.values.tolist() == pytest.approx([1.5, 2.0, 3.25])
    assert series.report.bad_rows == 1
    assert series.report.rows == 6


def test_servegen_bad_row_line_number(write):
    text = "".join(f"{600 * i},{-2 if i == 3 else i},1.0,Gamma,1,1\n" for i in range(1, 9))
    series = load_series(write("c.csv", text), max_bad_rows=1)
    assert series.report.first_bad == ("line 3: field 'rate_req_per_s': bad value '-2'",)  # headerless
    assert series.period_s == 600.0 and series.start_s == 600.0
    assert series.values[[0, 1, 3, 7]].tolist() == [1.0, 2.0, 4.0, 8.0] and np.isnan(series.values[2])


def test_series_csv_numeric_with_missing_value(write):
    series = load_series(write("s.csv", "time,value\n0,1.0\n60,2.0\n120,\n180,4\n"))
    assert (series.start_s, series.period_s, series.epoch) == (0.0, 60.0, False)
    assert series.values[[0, 1, 3]].tolist() == [1.0, 2.0, 4.0] and np.isnan(series.values[2])
    assert series.report.bad_rows == 0


def test_series_csv_iso_times(write):
    text = "time,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n2024-01-01T01:02:00+01:00,3\n"
    series = load_series(write("s.csv", text))
    assert series.epoch is True
    assert series.start_s == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert series.period_s == 60.0 and series.values.tolist() == [1.0, 2.0, 3.0]


def test_series_values_are_counts(write):
    path = write("s.csv", "ts,requests\n0,60\n60,120\n120,30\n")
    assert load_series(path, values_are_counts=True).values.tolist() == [1.0, 2.0, 0.5]
    assert load_series(path).values.tolist() == [60.0, 120.0, 30.0]


def test_series_time_unit_and_explicit_columns(write):
    path = write("s.csv", "a,b,c\n0,9,1.5\n60000,9,2.5\n")
    series = load_series(path, fmt="series", time_col="a", value_col="c", time_unit_s=1e-3)
    assert series.period_s == 60.0 and series.values.tolist() == [1.5, 2.5]


def test_series_negative_value_is_bad(write):
    path = write("s.csv", "time,value\n0,1\n60,-1\n120,3\n180,4\n")
    series = load_series(path, max_bad_rows=1)
    assert series.report.bad_rows == 1
    assert series.report.first_bad == ("line 3: field 'value': bad value '-1'",)
    with pytest.raises(InputFormatError, match="exceed"):
        load_series(path)


def test_load_series_refuses_a_trace(write):
    with pytest.raises(InputFormatError, match="request trace"):
        load_series(write("azure.csv", AZURE))


def test_prometheus_matrix_sums_label_sets(write):
    path = write("p.json", _prom(
        [[1700000000, "1.5"], [1700000060, "2"], [1700000120, "NaN"], [1700000180, "1"]],
        [[1700000000, "0.5"], [1700000060, "1"], [1700000120, "NaN"], [1700000180, "2"]],
    ))
    series = load_series(path)
    assert (series.start_s, series.period_s, series.epoch) == (1700000000.0, 60.0, True)
    assert series.values[[0, 1, 3]].tolist() == [2.0, 3.0, 3.0]
    assert np.isnan(series.values[2])
    assert series.report.rows == 8 and series.source.startswith("prometheus:")


def test_prometheus_label_sets_on_different_times(write):
    path = write("p.json", _prom([[0, "1"], [60, "1"]], [[60, "2"], [120, "4"]]))
    assert load_series(path, detect_gaps=False).values.tolist() == [1.0, 3.0, 4.0]


def test_prometheus_data_without_envelope(write):
    doc = {"resultType": "matrix", "result": [{"metric": {}, "values": [[0, "1"], [30, "2"]]}]}
    assert load_series(write("p.json", json.dumps(doc))).values.tolist() == [1.0, 2.0]


def test_prometheus_vector_rejected(write):
    doc = {"status": "success", "data": {"resultType": "vector",
                                         "result": [{"metric": {}, "value": [1700000000, "1"]}]}}
    path = write("v.json", json.dumps(doc))
    with pytest.raises(InputFormatError, match="range-query") as info:
        load_series(path)
    assert str(info.value).startswith(f"{path}: field 'data.result': ")


def test_prometheus_malformed(write):
    with pytest.raises(InputFormatError, match="the query result is empty"):
        load_series(write("e.json", _prom()))
    with pytest.raises(InputFormatError, match="not valid JSON"):
        load_series(write("n.json", "{nope"))
    with pytest.raises(InputFormatError, match=r"entry 'result\[0\]'.*pairs"):
        load_series(write("b.json", _prom([[0, "x"]])))


# ---- collection gaps through load_series ---------------------------------------------------------------------


def _gappy_csv(write):
    vals = np.full(60, 10.0)
    vals[20:23] = 0.0
    return write("g.csv", "time,value\n" + "".join(f"{60 * i},{v}\n" for i, v in enumerate(vals)))


def test_load_series_masks_gaps(write):
    series = load_series(_gappy_csv(write))
    assert series.report.gap_bins == 3
    assert series.report.gaps == ((1200.0, 1380.0),)
    assert np.isnan(series.values[20:23]).all()
    assert np.isfinite(series.values[:20]).all() and np.isfinite(series.values[23:]).all()
    assert any("collection gap" in w for w in series.report.warnings())


def test_load_series_keeps_zeros_without_gap_detection(write):
    series = load_series(_gappy_csv(write), detect_gaps=False)
    assert series.values[20:23].tolist() == [0.0, 0.0, 0.0]
    assert series.report.gap_bins == 0 and series.report.gaps == ()
    assert load(_gappy_csv(write), detect_gaps=False).values[21] == 0.0


def test_load_series_coarser_period_keeps_gap_missing(write):
    path = _gappy_csv(write)
    assert np.isnan(load_series(path).resample(300.0).values[4])
    assert np.isnan(load_series(path, period_s=300.0).values[4])


# ---- load() / load_as_series() dispatch ----------------------------------------------------------------------


def test_load_dispatches_by_content(write):
    assert isinstance(load(write("azure.csv", AZURE)), RequestTrace)
    assert isinstance(load(write("s.csv", "time,value\n0,1\n60,2\n")), RateSeries)
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        load(write("azure2.csv", AZURE), fmt="xml")


def test_load_as_series_bins_a_trace(write):
    text = "time,input_tokens,output_tokens\n" + "".join(f"{t},1,1\n" for t in np.arange(0, 600, 0.5))
    series = load_as_series(write("t.csv", text), period_s=60.0)
    assert series.period_s == 60.0 and len(series) == 10
    assert series.values[:9].tolist() == [2.0] * 9


def test_load_as_series_resamples_a_series(write):
    path = write("s.csv", "time,value\n" + "".join(f"{60 * i},{i}\n" for i in range(1, 11)))
    series = load_as_series(path, period_s=300.0)
    assert series.period_s == 300.0 and series.values.tolist() == [3.0, 8.0]


# ---- real sample data ---------------------------------------------------------------------------------------


@_absent(AZURE_CONV)
def test_real_azure_conversation():
    trace = load_trace(AZURE_CONV)
    assert len(trace) == 19_366 and trace.report.bad_rows == 0 and trace.epoch is True
    assert 57 * 60 < trace.duration_s < 59 * 60
    assert trace.mean_rate_rps == pytest.approx(5.53, abs=0.01)
    assert trace.start_s == pytest.approx(T0 + 0.68059, abs=1e-5)
    assert trace.input_tokens[:2].tolist() == [374, 396] and trace.output_tokens[:2].tolist() == [44, 109]
    assert trace.input_tokens.min() >= 0 and trace.output_tokens.min() >= 0


@_absent(AZURE_CODE)
def test_real_azure_code():
    trace = load_trace(AZURE_CODE)
    assert len(trace) == 8_819 and trace.report.bad_rows == 0
    assert trace.input_tokens[:2].tolist() == [4808, 3180]


@_absent(MOONCAKE_REAL)
def test_real_mooncake_with_prefix_ids():
    trace = load_trace(MOONCAKE_REAL)
    assert len(trace) == 12_031 and trace.epoch is False and trace.start_s == 0.0
    assert trace.prefix_offsets is not None and len(trace.prefix_offsets) == 12_032
    assert trace.prefix_offsets[-1] == len(trace.prefix_ids)
    assert trace.prefix(0).tolist() == list(range(14))
    assert trace.prefix(1)[:3].tolist() == [0, 14, 15]
    assert trace.input_tokens[0] == 6758 and trace.output_tokens[0] == 500
    assert trace.duration_s == pytest.approx(3536.999)


@_absent(SERVEGEN_RATE)
def test_real_servegen_rate_series():
    series = load_series(SERVEGEN_RATE)
    assert len(series) == 2016 and series.period_s == 600.0 and series.start_s == 0.0
    assert series.values[0] == pytest.approx(212.78)
    assert not np.isnan(series.values).any()


@pytest.mark.skipif(not (SERVEGEN_DIR.exists() and SERVEGEN_RATE.exists()),
                    reason=f"sample data {SERVEGEN_DIR} / {SERVEGEN_RATE} is not available")
def test_real_servegen_directory_sums_to_series():
    assert len(list(SERVEGEN_DIR.glob("*.csv"))) == 162
    total = load_series(SERVEGEN_DIR)
    ref = load_series(SERVEGEN_RATE)
    assert total.source.endswith("(162 clients)")
    assert (total.start_s, total.period_s, len(total)) == (ref.start_s, ref.period_s, len(ref))
    assert np.nanmax(np.abs(total.values - ref.values)) < 1e-3
