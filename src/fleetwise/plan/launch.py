"""The engine command lines that run a planned replica: vLLM, SGLang and TensorRT-LLM flags for its tensor
parallelism, precision, batch cap and longest request.

Flags, as documented by each engine (checked 2026-12-07):

* vLLM (``vllm serve``, docs.vllm.ai "Engine arguments"): ``--tensor-parallel-size``, ``--max-num-seqs``,
  ``--max-model-len``, ``--dtype``; ``--quantization fp8`` quantizes bf16 weights to FP8 at load time and
  ``--kv-cache-dtype fp8`` stores the KV cache in FP8; pre-quantized checkpoints (compressed-tensors
  INT8/INT4, ModelOpt NVFP4) are recognised from their config, so they need no ``--quantization``.
* SGLang (``python -m sglang.launch_server``, docs.sglang.ai "Server arguments"): ``--model-path``, ``--tp``,
  ``--max-running-requests``, ``--context-length``, ``--dtype``, ``--quantization fp8``,
  ``--kv-cache-dtype fp8_e4m3``; pre-quantized checkpoints as for vLLM.
* TensorRT-LLM (``trtllm-serve``, nvidia.github.io/TensorRT-LLM "trtllm-serve"): ``--tp_size``,
  ``--max_batch_size``, ``--max_seq_len``; quantization comes with the checkpoint (NVIDIA ModelOpt FP8 /
  NVFP4 / INT4-AWQ exports), and an FP8 KV cache is ``kv_cache_config: {dtype: fp8}`` in the file given to
  ``--extra_llm_api_options``.

What the catalog does not know - which quantized checkpoint to load - is said, not guessed: a precision whose
weights must come pre-quantized names the checkpoint its quality figure was measured on when that is a
Hugging Face model, else asks for one (``<a W4A16 checkpoint of meta-llama/...>``).
"""

from __future__ import annotations

import math

ENGINES = ("vllm", "sglang", "trtllm")
_ON_THE_FLY = {"fp8"}  # vLLM and SGLang quantize bf16 weights to these at load time
_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
_FORMAT = {"int8": "W8A8 INT8", "int4": "W4A16 INT4", "fp4": "NVFP4", "fp8": "FP8"}
# vLLM and SGLang take the same kind of flags under different names: the command up to the checkpoint, then
# tensor parallelism, batch cap, longest request, and the FP8 value of --kv-cache-dtype.
_PYTHON_SERVERS = {
    "vllm": (("vllm", "serve"), "--tensor-parallel-size", "--max-num-seqs", "--max-model-len", "fp8"),
    "sglang": (("python", "-m", "sglang.launch_server", "--model-path"), "--tp", "--max-running-requests",
               "--context-length", "fp8_e4m3"),
}


def max_model_len(isl_max: int | None, osl_max: int | None, model_context: int) -> int:
    """The longest request the workload sends (its longest input plus longest output), rounded up to a multiple
    of 1,024 and capped at the model's context window; the window itself when the workload has no maximum."""
    if not isl_max or not osl_max:
        return model_context
    return min(model_context, int(math.ceil((isl_max + osl_max) / 1024) * 1024))


def checkpoint_for(hf_id: str, precision: str, quality_source: str = "") -> str:
    """The checkpoint to load: the model's own for 16-bit and on-the-fly FP8 (vLLM/SGLang), else the
    pre-quantized one the quality figure names (a huggingface.co URL), else a placeholder that says what to
    find."""
    if precision in _DTYPE or precision in _ON_THE_FLY:
        return hf_id
    prefix = "https://huggingface.co/"
    for word in quality_source.split():
        if word.startswith(prefix):
            return word.removeprefix(prefix).rstrip("/).,")
    return f"<a {_FORMAT.get(precision, precision)} checkpoint of {hf_id}>"


def launch_args(engine: str, *, hf_id: str, precision: str, kv_dtype: str, tp: int, max_batch: int,
                max_len: int, quality_source: str = "") -> list[str]:
    """The command line (argv) that starts one replica on ``engine`` (one of :data:`ENGINES`)."""
    ckpt = checkpoint_for(hf_id, precision, quality_source)
    fp8_kv = kv_dtype == "fp8"
    if engine in _PYTHON_SERVERS:
        head, tp_flag, batch_flag, len_flag, fp8_kv_value = _PYTHON_SERVERS[engine]
        argv = [*head, ckpt, tp_flag, str(tp), batch_flag, str(max_batch), len_flag, str(max_len)]
        if precision in _DTYPE:
            argv += ["--dtype", _DTYPE[precision]]
        if precision in _ON_THE_FLY:
            argv += ["--quantization", precision]
        return argv + (["--kv-cache-dtype", fp8_kv_value] if fp8_kv else [])
    if engine == "trtllm":
        if precision not in _DTYPE:  # trtllm-serve loads ModelOpt exports; it does not quantize at load time
            ckpt = f"<a ModelOpt {_FORMAT.get(precision, precision)} checkpoint of {hf_id}>"
        argv = ["trtllm-serve", ckpt, "--tp_size", str(tp), "--max_batch_size", str(max_batch),
                "--max_seq_len", str(max_len)]
        return argv + (["--extra_llm_api_options", "<file with kv_cache_config: {dtype: fp8}>"] if fp8_kv else [])
    raise ValueError(f"unknown engine '{engine}' (one of {', '.join(ENGINES)})")


def shell_line(argv: list[str]) -> str:
    """The argv as one line a person can paste (placeholders in <...> stay as they are, to be filled in)."""
    import shlex

    return " ".join(a if a.startswith("<") else shlex.quote(a) for a in argv)


def launch_commands(candidate, request) -> dict[str, list[str]]:
    """The command line of one replica of a planned ``candidate`` (:class:`fleetwise.plan.Candidate`) on each
    engine, for the ``request`` (:class:`fleetwise.plan.PlanRequest`) it answered."""
    from fleetwise.catalog import load_catalog

    cat = load_catalog(request.catalog)
    model, precision = cat.model(candidate.model), cat.precision(candidate.precision)
    wl = request.workload
    length = max_model_len(wl.isl.max_tokens, wl.osl.max_tokens, model.max_context)
    return {engine: launch_args(engine, hf_id=model.hf_id, precision=precision.id, kv_dtype=precision.kv_dtype,
                                tp=candidate.tp, max_batch=candidate.max_batch, max_len=length,
                                quality_source=candidate.quality_source)
            for engine in ENGINES}


def wrapped(line: str, width: int = 80, indent: str = "    ") -> str:
    """A shell line broken into backslash-continued lines of at most ``width`` characters (still pasteable)."""
    out, cur = [], indent
    for word in line.split(" "):
        if cur.strip() and len(cur) + 1 + len(word) + 2 > width:
            out.append(cur + " \\")
            cur = indent + "  " + word
        else:
            cur = cur + (" " if cur.strip() else "") + word
    return "\n".join([*out, cur])
