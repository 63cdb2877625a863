"""The gateway's Prometheus metrics (``fleetwise_gateway_*``), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Added latency: 50 us .. 1 s; LiteLLM's published overhead is 2-43 ms, Bifrost's 0.01-0.5 ms.
OVERHEAD_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        p = "fleetwise_gateway_"
        self.cost = Counter(p + "cost_usd", "USD charged, by tenant and serving model.", ["tenant", "model"],
                            registry=r)
        self.tokens = Counter(p + "tokens", "Tokens metered.", ["tenant", "model", "kind"], registry=r)
        self.cache_hits = Counter(p + "cache_hits", "Requests answered from the response cache.", registry=r)
        self.dedup_joined = Counter(p + "dedup_joined", "Requests that joined an identical one in flight.",
                                    registry=r)
        self.routed = Counter(p + "routed", "Requests routed by a route, by route and chosen model.",
                              ["route", "model"], registry=r)
        self.shed = Counter(p + "shed", "Requests shed while their model was saturated, by class.", ["class"],
                            registry=r)
        self.resumed = Counter(p + "resumed", "Streams resumed on another backend after one was lost.",
                               registry=r)
        self.rerouted = Counter(p + "rerouted", "Requests sent to another backend after one refused them "
                                "unanswered (connection refused, 503).", registry=r)
        self.requests = Counter(p + "requests", "Completion requests by HTTP status.", ["status"], registry=r)
        self.overhead = Histogram(p + "overhead_seconds", "Time in the gateway outside the upstream call.",
                                  buckets=OVERHEAD_BUCKETS_S, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
