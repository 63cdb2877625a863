"""What each gateway mechanism saves, measured end to end with fleetwise's own commands on a real trace.

    python benchmarks/gateway_savings.py [--requests 3000] [--compress 5] [--json]

Processes (all on 127.0.0.1, all stopped at the end, also on Ctrl-C):

* backends: ``fleetwise emulate -m llama-3.1-8b --workers 2`` (the cheap model, fp8 on one H100 each) and
  ``fleetwise emulate -m llama-3.1-70b --gpus 2 --workers 4`` (the strong one, fp8 TP2), ``--time-scale``
  = ``--compress``;
* one ``fleetwise gateway --config gateway.yaml --state sqlite:///...`` per mechanism, with prices derived
  from the fleet once at the start (``fleetwise.gateway.pricing``: a replica's on-demand $/hour over its
  tokens/hour at the perf model's goodput) and written into every gateway's config, so all meter alike;
* the load: ``fleetwise replay`` of the first N requests of the Azure LLM conversation trace (2023) at its
  own arrival times (compressed), chat API, ``--model auto`` (the cheap/strong route), with the stated shares
  below; the routing threshold comes from ``fleetwise gateway calibrate`` on the very requests replay sends;
* the bill: ``fleetwise report costs --state ... --json`` (what the gateway metered).

Stated shares (assumptions, not measurements: no public trace records them):

* deterministic share 50% (``--deterministic-share 0.5``: temperature 0; the rest temperature 0.7);
* duplicated share 15% (``--duplicate-share 0.15``): a request repeats one of the previous 50 deterministic
  ones (retries, refreshes, several users asking the same) at its own arrival time;
* routing: the threshold sends 30% of the sample to the strong model (``--strong-share 0.3``).

Each mechanism gets a fresh gateway (empty cache and ledger): ``none`` (all to the strong model, no cache, no
de-duplication), ``cache``, ``dedup``, ``route``, ``all``. Cost is what the gateway metered; the saving is
against ``none``. The gateway always streams from its backends (usage, resume, single-flight), so at X times
the trace's speed it parses X times the trace's ~1,400 token events a second: at 20x that is ~28,000 a second,
and on a 2-core machine the latency columns would measure the machine, not the fleet (the costs are the same
at any speed). Hence 5x by default, and answers to the client not streamed (``--stream`` streams them too).
The replay's E2E percentiles (trace time) are printed next to each saving: a saving that overloaded the cheap
model would show there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "azure_llm_conv_2023.csv"
MECHANISMS = ("none", "cache", "dedup", "route", "all")
MIX = {"deterministic_share": 0.5, "temperature": 0.7, "duplicate_share": 0.15, "duplicate_window": 50, "seed": 0}
FLEET = {"llama-3.1-8b": {"gpu": "h100", "gpus": 1, "precision": "fp8"},
         "llama-3.1-70b": {"gpu": "h100", "gpus": 2, "precision": "fp8"}}
PRICES: dict = {}  # filled by main() from FLEET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {url} did not answer within {timeout_s:g} s")
        time.sleep(0.2)


@contextlib.contextmanager
def process(args: list[str], ready_url: str, log: Path):
    """A fleetwise command in its own process group, stopped (SIGTERM, then SIGKILL) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["fleetwise", *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(ready_url)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def fleetwise_json(*args: str) -> dict:
    done = subprocess.run(["fleetwise", *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: fleetwise {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def fleet_prices() -> dict:
    """USD per 1M tokens of each model, derived from the fleet once (fleetwise.gateway.pricing, the rule the
    gateway applies to ``fleet:`` entries), so every gateway of the run meters at the same prices."""
    from fleetwise.gateway.config import GatewayFile
    from fleetwise.gateway.pricing import prices_from

    prices = prices_from(GatewayFile.model_validate({"fleet": FLEET}))
    return {m: {"input": p.input_usd_per_1m, "output": p.output_usd_per_1m} for m, p in prices.items()}


def gateway_config(urls: dict[str, list[str]], threshold: float, mechanism: str) -> dict:
    route = {"cheap": "llama-3.1-8b", "strong": "llama-3.1-70b",
             "threshold": threshold if mechanism in ("route", "all") else 0.0}
    return {"backends": urls, "routes": {"auto": route}, "prices_usd_per_1m_tokens": PRICES,
            "cache": {"ttl_s": 3600, "max_entries": 100_000 if mechanism in ("cache", "all") else 0},
            "single_flight": mechanism in ("dedup", "all")}


def calibrate_threshold(work: Path, n: int, share: float, urls: dict[str, list[str]]) -> dict:
    """``fleetwise gateway calibrate`` on the bodies replay will send (same trace window, same mix)."""
    import numpy as np
    import yaml

    from fleetwise.replay import RequestMix, request_bodies
    from fleetwise.traffic.load import load_trace

    trace = load_trace(TRACE)
    trace = trace.take(np.arange(min(n, len(trace))))  # replay --limit n: the same requests
    sample = work / "sample.jsonl"
    with open(sample, "wb") as f:
        f.writelines(body + b"\n" for body in request_bodies(trace, model="auto", api="chat", stream=False, mix=RequestMix(**MIX)))
    cfg = work / "calibrate.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(urls, 0.0, "none")))
    return fleetwise_json("gateway", "calibrate", "--sample", str(sample), "--strong-share", str(share),
                          "--config", str(cfg), "--json")


def run_mechanism(work: Path, mechanism: str, threshold: float, urls: dict[str, list[str]], args) -> dict:
    import yaml

    cfg = work / f"{mechanism}.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(urls, threshold, mechanism)))
    state = f"sqlite:///{work / f'{mechanism}.db'}"
    port = free_port()
    gw = f"http://127.0.0.1:{port}"
    with process(["gateway", "--config", str(cfg), "--port", str(port), "--state", state],
                 gw + "/health", work / f"gateway-{mechanism}.log"):
        replay = fleetwise_json(
            "replay", str(TRACE), "--limit", str(args.requests), "--time-compress", str(args.compress),
            "--url", gw, "--model", "auto", "--api", "chat", "--json", "--quiet",
            "--stream" if args.stream else "--no-stream",
            "--deterministic-share", str(MIX["deterministic_share"]), "--temperature", str(MIX["temperature"]),
            "--duplicate-share", str(MIX["duplicate_share"]), "--duplicate-window", str(MIX["duplicate_window"]),
            "--seed", str(MIX["seed"]))
        with urllib.request.urlopen(gw + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
    costs = fleetwise_json("report", "costs", "--state", state, "--json")
    total = costs["total"]
    return {"mechanism": mechanism, "requests": replay["requests"], "failed": replay["failed"],
            "failed_by_reason": replay["failed_by_reason"],
            "cost_usd": total["cost_usd"], "list_cost_usd": total["list_cost_usd"],
            "saved_by": costs["saved_by"], "cache_hits": _counter(metrics, "fleetwise_gateway_cache_hits_total"),
            "dedup_joined": _counter(metrics, "fleetwise_gateway_dedup_joined_total"),
            "e2e_p50_ms": replay["e2e_ms"]["p50"], "e2e_p95_ms": replay["e2e_ms"]["p95"],
            "ttft_p95_ms": replay["ttft_ms"]["p95"], "tpot_p95_ms": replay["tpot_ms"]["p95"],
            "slo_attainment": replay["slo_attainment"]}


def _counter(text: str, name: str) -> float:
    """Sum of a counter's samples in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--compress", type=float, default=5.0)
    ap.add_argument("--strong-share", type=float, default=0.3)
    ap.add_argument("--stream", action="store_true", help="stream the answers (TTFT/TPOT columns too)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the processes as Ctrl-C does
    if not TRACE.exists():
        raise SystemExit(f"error: {TRACE} not found (the shared data directory beside the checkout)")
    PRICES.update(fleet_prices())
    rows = []
    with tempfile.TemporaryDirectory(prefix="fleetwise-savings-") as tmp:
        work = Path(tmp)
        cheap_port, strong_port = free_port(), free_port()
        while strong_port in range(cheap_port, cheap_port + 2) or cheap_port in range(strong_port, strong_port + 4):
            strong_port = free_port()
        scale = ["--time-scale", str(args.compress)]
        with process(["emulate", "-m", "llama-3.1-8b", "--workers", "2", "--port-base", str(cheap_port), *scale],
                     f"http://127.0.0.1:{cheap_port + 1}/health", work / "cheap.log"), \
             process(["emulate", "-m", "llama-3.1-70b", "--gpus", "2", "--workers", "4", "--port-base",
                      str(strong_port), *scale], f"http://127.0.0.1:{strong_port + 3}/health", work / "strong.log"):
            urls = {"llama-3.1-8b": [f"http://127.0.0.1:{cheap_port + k}" for k in range(2)],
                    "llama-3.1-70b": [f"http://127.0.0.1:{strong_port + k}" for k in range(4)]}
            calibration = calibrate_threshold(work, args.requests, args.strong_share, urls)
            threshold = calibration["threshold"]
            for mechanism in MECHANISMS:
                rows.append(run_mechanism(work, mechanism, threshold, urls, args))
                print(f"{mechanism}: ${rows[-1]['cost_usd']:.4f}", file=sys.stderr, flush=True)
    base = rows[0]["cost_usd"]
    for r in rows:
        r["saving_vs_none"] = 1.0 - r["cost_usd"] / base if base else None
    if args.json:
        print(json.dumps({"threshold": threshold, "calibration": calibration, "mix": MIX, "prices": PRICES,
                          "requests": args.requests, "compress": args.compress, "rows": rows}, indent=2))
        return
    print(f"{args.requests:,} requests of the Azure conversation trace at {args.compress:g}x through fleetwise "
          f"replay; threshold {threshold:.4f}; deterministic {MIX['deterministic_share']:.0%}, duplicated "
          f"{MIX['duplicate_share']:.0%}")
    print(f"{'mechanism':10} {'failed':>6} {'cost $':>9} {'saving':>7} {'hits':>5} {'joined':>6} "
          f"{'E2E p50':>9} {'E2E p95':>9}")
    for r in rows:
        print(f"{r['mechanism']:10} {r['failed']:>6} {r['cost_usd']:>9.4f} {r['saving_vs_none']:>7.1%} "
              f"{r['cache_hits']:>5.0f} {r['dedup_joined']:>6.0f} {r['e2e_p50_ms'] / 1e3:>8.2f}s "
              f"{r['e2e_p95_ms'] / 1e3:>8.2f}s")


if __name__ == "__main__":
    main()
