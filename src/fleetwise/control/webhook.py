"""The ``webhook`` actuator: the fleet is run by something else (a deploy pipeline, a cloud autoscaler, a
person); the controller POSTs each plan to a URL as JSON and reads the fleet from a fixed list of workers.

Body of each POST: ``{"pool": ..., "desired": {"tier": n}, "draining": [ids], "remove": [ids],
"workers": [{"id", "url", "tier", "state"}]}``. A failed POST (connection error, timeout, 5xx) is retried
with exponential backoff (3 tries, 0.5 s, 1 s); a 4xx is not retried. The plan is idempotent, so a receiver
that sees it twice does nothing the second time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleetwise.control.types import PROVISIONING, SERVING, FleetPlan, Worker
from fleetwise.errors import ActuatorError, ConfigError

RETRIES = 3
BACKOFF_S = 0.5


@dataclass
class WebhookActuator:
    """POSTs the plan to ``url``; the fleet is the fixed ``workers`` (id from the URL), in ``tier``."""

    url: str
    workers: Sequence[str] = ()
    pool: str = "static"
    tier: str = "on_demand"
    timeout_s: float = 5.0
    name: str = "webhook"
    posted: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"--webhook-url '{self.url[:80]}' must be an http:// or https:// URL")

    def observe(self) -> list[Worker]:
        import httpx

        out = []
        for base in self.workers:
            try:
                ok = httpx.get(base.rstrip("/") + "/health", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                ok = False
            out.append(Worker(base.split("://", 1)[-1], self.pool, self.tier, SERVING if ok else PROVISIONING, base))
        return out

    def apply(self, plan: FleetPlan) -> None:
        import httpx

        body = {"pool": self.pool, "desired": {t: n for (p, t), n in plan.desired.items() if p == self.pool},
                "draining": sorted(plan.draining), "remove": sorted(plan.remove)}
        error = ""
        for attempt in range(RETRIES):
            try:
                resp = httpx.post(self.url, json=body, timeout=self.timeout_s)
                if resp.status_code < 400:
                    self.posted.append(body)
                    return
                error = f"HTTP {resp.status_code}"
                if resp.status_code < 500:
                    break
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            if attempt + 1 < RETRIES:
                time.sleep(BACKOFF_S * 2 ** attempt)
        raise ActuatorError(f"webhook {self.url}: plan not accepted ({error})")
