"""Engine command lines for a planned replica: the flags each engine documents, the checkpoint it must load."""

from __future__ import annotations

import json

import pytest

from fleetwise.plan.launch import checkpoint_for, launch_args, max_model_len, shell_line

HF = "meta-llama/Llama-3.1-70B"


def test_fp8_is_quantized_at_load_on_vllm_and_sglang_but_needs_a_modelopt_export_on_trtllm():
    vllm = launch_args("vllm", hf_id=HF, precision="fp8", kv_dtype="fp8", tp=2, max_batch=256, max_len=8192)
    assert vllm == ["vllm", "serve", HF, "--tensor-parallel-size", "2", "--max-num-seqs", "256",
                    "--max-model-len", "8192", "--quantization", "fp8", "--kv-cache-dtype", "fp8"]
    sglang = launch_args("sglang", hf_id=HF, precision="fp8", kv_dtype="fp8", tp=2, max_batch=256, max_len=8192)
    assert sglang[:4] == ["python", "-m", "sglang.launch_server", "--model-path"] and sglang[4] == HF
    assert "--tp" in sglang and "--kv-cache-dtype" in sglang and sglang[-1] == "fp8_e4m3"
    trt = launch_args("trtllm", hf_id=HF, precision="fp8", kv_dtype="fp8", tp=2, max_batch=256, max_len=8192)
    assert trt[1] == f"<a ModelOpt FP8 checkpoint of {HF}>" and trt[2:8] == [
        "--tp_size", "2", "--max_batch_size", "256", "--max_seq_len", "8192"]


def test_pre_quantized_formats_name_the_measured_checkpoint_or_ask_for_one():
    source = "https://huggingface.co/RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w4a16 (model card, Red Hat)"
    assert checkpoint_for(HF, "int4", source) == "RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w4a16"
    assert checkpoint_for(HF, "int4", "") == f"<a W4A16 INT4 checkpoint of {HF}>"
    assert checkpoint_for(HF, "bf16", source) == HF  # 16-bit: the model's own weights
    argv = launch_args("vllm", hf_id=HF, precision="int4", kv_dtype="bf16", tp=1, max_batch=64, max_len=4096,
                       quality_source=source)
    assert "--quantization" not in argv and "--kv-cache-dtype" not in argv  # read from the checkpoint
    bf16 = launch_args("vllm", hf_id=HF, precision="bf16", kv_dtype="bf16", tp=4, max_batch=64, max_len=4096)
    assert bf16[-2:] == ["--dtype", "bfloat16"]
    with pytest.raises(ValueError, match="unknown engine"):
        launch_args("tgi", hf_id=HF, precision="bf16", kv_dtype="bf16", tp=1, max_batch=1, max_len=1)


def test_max_model_len_covers_the_longest_request_within_the_context_window():
    assert max_model_len(16384, 2048, 131072) == 18432
    assert max_model_len(5000, 200, 131072) == 6144  # rounded up to 1,024
    assert max_model_len(128000, 2048, 131072) == 130048
    assert max_model_len(200000, 2048, 131072) == 131072  # capped
    assert max_model_len(None, 2048, 131072) == 131072  # no maximum known: the window


def test_shell_line_quotes_arguments_but_leaves_placeholders_and_wraps_pasteably():
    from fleetwise.plan.launch import wrapped

    assert shell_line(["a", "b c", "<fill me in>"]) == "a 'b c' <fill me in>"
    line = "vllm serve meta-llama/Llama-3.1-70B --tensor-parallel-size 2 --max-num-seqs 256 --max-model-len 8192"
    lines = wrapped(line, 40).splitlines()
    assert all(len(x) <= 40 for x in lines) and all(x.endswith(" \\") for x in lines[:-1])
    assert " ".join(x.rstrip(" \\").strip() for x in lines) == line


def test_plan_json_and_table_carry_the_launch_lines(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fleetwise.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    args = ["plan", "--model", "llama-3.1-8b", "--gpu", "h100", "--cloud", "aws", "--precision", "fp8",
            "--tp", "1", "--max-batch", "64,128"]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    best = json.loads(out.stdout)["candidates"][0]
    assert set(best["launch"]) == {"vllm", "sglang", "trtllm"}
    assert best["launch"]["vllm"].startswith("vllm serve meta-llama/Llama-3.1-8B --tensor-parallel-size 1 ")
    assert f"--max-num-seqs {best['max_batch']} " in best["launch"]["vllm"]
    table = runner.invoke(app, [*args, "--engine", "vllm"])
    assert table.exit_code == 0, table.output
    assert "launch each replica (vllm; every engine's line is in --json):\n    vllm serve meta-llama/Llama-3.1-8B" \
        in table.stdout
    assert "replica(s)" not in table.stdout
