"""What each gateway mechanism saves, measured on a real trace through emulated backends.

    python benchmarks/gateway_savings.py [--requests 3000] [--compress 20] [--json]

Backends: emulated llama-3.1-8b (the cheap model) and llama-3.1-70b (the strong one) workers on H100s
(fleetwise emulate, --time-scale = --compress), priced from the fleet (gateway ``fleet:`` entries: a replica's
$/hour over its tokens/hour at the perf model's goodput). Requests: the first N of the Azure LLM conversation
trace, at the trace's times (compressed), each a chat request with a text prompt of the trace's input length
and ``max_tokens`` = its output length (``ignore_eos``), sent to the route model ``auto`` (cheap/strong).
Stated shares (assumptions, not measurements: no public trace records them):

* deterministic share 50% (temperature 0; the rest temperature 0.7);
* duplicated share 15%: a request repeats one of the previous 50 deterministic ones (retries, refreshes,
  several users asking the same) - half of them while the original is still running;
* routing: the threshold is calibrated on the sample to send 30% to the strong model.

Each run replays the same requests through a fresh gateway with one mechanism set: ``none`` (all to the strong
model, no cache, no de-duplication), ``cache``, ``dedup``, ``route``, ``all``. Cost is what the gateway
metered (its usage log); list cost is the same requests sent as asked to the strong model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "azure_llm_conv_2023.csv"
WORDS = ["the", "fleet", "serves", "tokens", "at", "the", "lowest", "cost", "that", "still", "meets", "its", "latency", "objectives", "while", "spot", "capacity", "comes", "and", "goes", "and", "every", "request", "is", "counted"]
MECHANISMS = ("none", "cache", "dedup", "route", "all")


def requests(n: int, seed: int = 0) -> list[tuple[float, dict]]:
    """(arrival s, chat body) for the first n requests of the trace, with the stated shares."""
    from fleetwise.cli.traffic import load_input

    tr = load_input(TRACE)
    rng = random.Random(seed)
    out, recent = [], []
    for i in range(min(n, len(tr))):
        t = float(tr.arrival_s[i] - tr.arrival_s[0])
        if recent and rng.random() < 0.15:
            out.append((t, dict(rng.choice(recent))))
            continue
        isl, osl = int(tr.input_tokens[i]), max(1, int(tr.output_tokens[i]))
        words = " ".join(rng.choice(WORDS) for _ in range(max(1, isl * 4 // 5 - 4)))
        body = {"model": "auto", "messages": [{"role": "user", "content": f"request {i}: {words}"}],
                "max_tokens": osl, "min_tokens": osl, "ignore_eos": True}
        if rng.random() < 0.5:
            body["temperature"] = 0
            recent = (recent + [body])[-50:]
        else:
            body["temperature"] = 0.7
        out.append((t, body))
    return out


def gateway_config(urls: dict[str, list[str]], threshold: float, mechanism: str) -> dict:
    route = {"cheap": "llama-3.1-8b", "strong": "llama-3.1-70b",
             "threshold": threshold if mechanism in ("route", "all") else 0.0}
    return {"backends": urls, "routes": {"auto": route},
            "fleet": {"llama-3.1-8b": {"gpu": "h100", "gpus": 1, "precision": "fp8"},
                      "llama-3.1-70b": {"gpu": "h100", "gpus": 2, "precision": "fp8"}},
            "cache": {"ttl_s": 3600, "max_entries": 100_000 if mechanism in ("cache", "all") else 0},
            "single_flight": mechanism in ("dedup", "all")}


async def send_all(url: str, reqs: list[tuple[float, dict]], compress: float) -> int:
    """Send at the trace's times; returns failures."""
    import aiohttp

    failures = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        async def one(k: int, t: float, body: dict) -> None:
            nonlocal failures
            await asyncio.sleep(max(0.0, t / compress - (time.perf_counter() - started)))
            async with http.post(url + "/v1/chat/completions", json=body) as resp:
                await resp.read()
                failures += resp.status != 200
        await asyncio.gather(*(one(k, t, b) for k, (t, b) in enumerate(reqs)))
    return failures


def run(reqs, compress: float, threshold: float, mechanism: str, urls: dict[str, list[str]]) -> dict:
    from fleetwise.gateway.app import Gateway, create_app
    from fleetwise.gateway.config import GatewayFile
    from fleetwise.gateway.usage import MemoryUsage, summarize
    from tests.apps import AppServer

    usage = MemoryUsage()
    gw = Gateway.build(GatewayFile.model_validate(gateway_config(urls, threshold, mechanism)), usage=usage)
    with AppServer(create_app(gw)) as server:
        failures = asyncio.run(send_all(server.url, reqs, compress))
    rows = asyncio.run(usage.query(None, 0.0, None))
    s = summarize(rows)
    return {"mechanism": mechanism, "requests": len(reqs), "failed": failures,
            "cost_usd": s["total"]["cost_usd"], "list_cost_usd": s["total"]["list_cost_usd"],
            "saved_by": s["saved_by"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--compress", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.apps: uvicorn in a thread
    from fleetwise.emulate import EmulatorConfig, WorkerThread
    from fleetwise.gateway.router import FeatureScorer, calibrate

    reqs = requests(args.requests)
    scorer = FeatureScorer()
    threshold = calibrate([scorer.score(b) for _, b in reqs], 0.3)
    cheap = WorkerThread(EmulatorConfig(model="llama-3.1-8b", time_scale=args.compress), n=2)
    strong = WorkerThread(EmulatorConfig(model="llama-3.1-70b", gpus=2, time_scale=args.compress), n=4)
    rows = []
    with cheap, strong:
        urls = {"llama-3.1-8b": cheap.urls, "llama-3.1-70b": strong.urls}
        for mechanism in MECHANISMS:
            rows.append(run(reqs, args.compress, threshold, mechanism, urls))
            print(f"{mechanism}: done", file=sys.stderr, flush=True)
    base = rows[0]["cost_usd"]
    for r in rows:
        r["saving_vs_none"] = 1.0 - r["cost_usd"] / base if base else None
    if args.json:
        print(json.dumps({"threshold": threshold, "rows": rows}, indent=2))
        return
    print(f"{len(reqs):,} requests of the Azure conversation trace at {args.compress:g}x; threshold {threshold:.4f}")
    print(f"{'mechanism':10} {'failed':>6} {'cost $':>10} {'saving':>8}")
    for r in rows:
        print(f"{r['mechanism']:10} {r['failed']:>6} {r['cost_usd']:>10.4f} {r['saving_vs_none']:>8.1%}")


if __name__ == "__main__":
    main()
