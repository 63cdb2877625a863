"""Head-to-head in the simulator: fleetwise's controller policy (``hybrid``) against re-implementations of the
anchors' scaling rules (``hpa-queue``, ``wva``, ``dynamo-load``, ``skyserve``; see ``fleetwise.sim.anchors``),
with ``static-peak``, ``reactive`` and ``rolling`` for reference. Same traces, same SLO, same fleet, same seed.

Fleet: llama-3.1-70b, FP8, 4 x h100-sxm per replica (TP4, trtllm profile; ``fleetwise simulate``'s default
replica), AWS offers with a spot price - ``fleet_spec`` picks p5.48xlarge, 2 engines per instance, $55.04/h
on demand, $28.11/h spot, cold start 253 s. SLO: p95 TTFT <= 1000 ms, TPOT <= 50 ms (the CLI defaults), one
"interactive" class. Spot interruptions at 2 per instance-hour (``SimConfig.hazard_per_hour``, and the instance
type's hazard the rolling optimizer prices in), 2-minute notice, 90% spot availability (the rest falls back to
on-demand), default drain. Control interval 60 s. Every policy with a ceiling (reactive and the anchors) may
grow to twice the static-peak fleet (an operator's maxReplicas; with none, HPA on a queue target launches
hundreds of instances while the first ones boot). Each policy's per-instance capacity is the perf model's
goodput at the SLO on that trace's lengths (``fleet_spec(lengths=...)``).

Traces (each scaled to load a fleet of several instances):

1. ``azure-conv``: the Azure LLM conversation trace 2023 (19,366 requests, 1 h), rate x10 with
   ``fleetwise.traffic.convert.rate_multiply(trace, 10, jitter_s=30)`` (what ``fleetwise traffic convert
   --rate-multiply 10`` does, with the copies spread +-30 s instead of the CLI's +-1 s: the hour, its
   minute-scale shape and the lengths are kept, without clumps of 10 identical prompts within 2 s that no
   real traffic has - they broke every fleet's TTFT, static-peak's included) -> 193,660 requests.
2. ``azure-code``: the Azure LLM code trace 2023 (8,819 requests, 1 h), rate x10 the same way.
3. ``synthetic``: 12 hours (06:00-18:00) of ``fleetwise traffic synth``'s model - base 25 req/s, daily
   amplitude 0.6 peaking at 14:00, 10% correlated noise, bursts (8 a day on average, x2 for 20 minutes),
   seed 0 - with (input, output) pairs resampled from the conversation trace.

``--quick``: the first 20 minutes of trace 1 only (a smoke run, a few seconds).

Usage: python benchmarks/control_anchors.py [--quick] [--json] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
MODEL, GPU, GPUS, PRECISION, CLOUDS = "llama-3.1-70b", "h100-sxm", 4, "fp8", ["aws"]
TTFT_MS, TPOT_MS = 1000.0, 50.0
HAZARD_PER_HOUR = 2.0
RATE_MULTIPLIER = 10.0
JITTER_S = 30.0
STRATEGIES = ["static-peak", "reactive", "rolling", "hybrid", "hpa-queue", "wva", "dynamo-load", "skyserve"]
QUICK_SPAN_S = 1200.0


def _azure(name: str):
    from fleetwise.traffic.convert import rate_multiply
    from fleetwise.traffic.load import load_trace

    return rate_multiply(load_trace(DATA / f"azure_llm_{name}_2023.csv"), RATE_MULTIPLIER, seed=0, jitter_s=JITTER_S)


def _synthetic():
    from fleetwise.traffic.lengths import EmpiricalLengths
    from fleetwise.traffic.load import load_trace
    from fleetwise.traffic.synth import SyntheticSpec, synthetic_trace

    conv = load_trace(DATA / "azure_llm_conv_2023.csv")
    spec = SyntheticSpec(days=0.5, period_s=60.0, base_rps=25.0, daily_amplitude=0.6, peak_hour=14.0,
                         weekend_factor=1.0, noise_cv=0.1, bursts_per_day=8.0, burst_multiplier=2.0,
                         burst_minutes=20.0, start_s=6 * 3600.0)
    return synthetic_trace(spec, EmpiricalLengths(conv.input_tokens, conv.output_tokens), seed=0)


TRACES = {"azure-conv": lambda: _azure("conv"), "azure-code": lambda: _azure("code"), "synthetic": _synthetic}


def _requests(trace, span_s: float | None = None):
    import numpy as np

    from fleetwise.sim.requests import SimRequests, named_class

    if span_s is not None:
        keep = np.asarray(trace.arrival_s) - trace.arrival_s[0] < span_s
        trace = trace.take(np.flatnonzero(keep))
    return SimRequests.from_trace(trace, (named_class("interactive", TTFT_MS, TPOT_MS),))


def run_trace(label: str, quick: bool = False) -> dict:
    """Every strategy on one trace; returns its rows and the fleet description."""
    from fleetwise.sim.core import SimConfig
    from fleetwise.sim.setup import fleet_spec, instances_for
    from fleetwise.sim.strategies import compare_strategies, window_rates

    requests = _requests(TRACES[label](), QUICK_SPAN_S if quick else None)
    spec = fleet_spec(MODEL, GPU, GPUS, precision=PRECISION, clouds=CLOUDS, ttft_ms=TTFT_MS, tpot_ms=TPOT_MS,
                      hazard_per_hour=HAZARD_PER_HOUR, want_spot=True, lengths=(requests.isl, requests.osl))
    config = SimConfig(hazard_per_hour=HAZARD_PER_HOUR, seed=0)
    ceiling = 2 * instances_for(window_rates(requests).max(), spec)
    start = time.perf_counter()
    results = compare_strategies(requests, spec, STRATEGIES, config, max_instances=ceiling)
    return {"trace": label, "requests": len(requests), "fleet": spec.describe(), "max_instances": ceiling,
            "capacity_rps_per_instance": spec.capacity_rps_per_instance, "wall_s": time.perf_counter() - start,
            "rows": [_row(r) for r in results]}


def _row(r) -> dict:
    return {"strategy": r.strategy, "cost_usd": r.cost_usd, "usd_per_1m_tokens": r.usd_per_1m_tokens,
            "slo_attainment": r.slo_attainment, "ttft_p95_ms": r.ttft_ms["p95"], "tpot_p95_ms": r.tpot_ms["p95"],
            "dropped": r.dropped, "unfinished": r.unfinished, "cost_by_tier": r.cost_by_tier,
            "instances_launched": r.instances_launched, "preemptions": r.preemptions,
            "usd_per_hour_peak": r.usd_per_hour_peak}


def verdict(rows: list[dict], ours: str = "hybrid") -> str:
    """Whether ``ours`` is the cheapest among the strategies with equal or better SLO attainment."""
    me = next(r for r in rows if r["strategy"] == ours)
    rivals = [r for r in rows if r["strategy"] != ours and r["slo_attainment"] >= me["slo_attainment"] - 1e-12]
    cheaper = [r["strategy"] for r in rivals if r["cost_usd"] < me["cost_usd"]]
    if cheaper:
        return f"{ours} is NOT the cheapest at equal or better SLO attainment: cheaper and at least as good: " \
               + ", ".join(cheaper)
    better = [r["strategy"] for r in rows if r["slo_attainment"] > me["slo_attainment"] + 1e-12]
    tail = f" (higher SLO attainment, at a higher cost: {', '.join(better)})" if better else ""
    return f"{ours} is the cheapest at equal or better SLO attainment{tail}"


def render(out: dict) -> str:
    head = f"{'strategy':<12} {'cost $':>9} {'$/1M tok':>9} {'SLO %':>7} {'TTFT p95 ms':>12} {'TPOT p95 ms':>12} " \
           f"{'dropped':>8} {'unfinished':>10}"
    title = (f"== {out['trace']}: {out['requests']:,} requests; {out['fleet']}; "
             f"{out['capacity_rps_per_instance']:.2f} req/s per instance at the SLO; at most {out['max_instances']} "
             f"instances ({out['wall_s']:.0f} s)")
    lines = [title, head]
    for r in out["rows"]:
        lines.append(f"{r['strategy']:<12} {r['cost_usd']:>9,.2f} {r['usd_per_1m_tokens']:>9.3f} "
                     f"{100 * r['slo_attainment']:>7.2f} {r['ttft_p95_ms']:>12,.0f} {r['tpot_p95_ms']:>12.1f} "
                     f"{r['dropped']:>8,} {r['unfinished']:>10,}")
    lines.append(verdict(out["rows"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 minutes of the conversation trace")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--jobs", type=int, default=1, help="traces simulated in parallel (processes)")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"traces not found under {DATA}", file=sys.stderr)
        return 2
    labels = ["azure-conv"] if args.quick else list(TRACES)
    if args.jobs > 1 and len(labels) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(labels))) as pool:
            outs = list(pool.map(run_trace, labels))
    else:
        outs = [run_trace(label, args.quick) for label in labels]
    if args.json:
        print(json.dumps(outs, indent=2))
    else:
        print("\n\n".join(render(o) for o in outs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
