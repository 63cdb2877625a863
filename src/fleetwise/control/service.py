"""Assemble and serve a controller: the library calls behind ``fleetwise control``.

``build_controller`` picks the actuator (``local``, ``kubernetes``, ``webhook``), the metrics source
(``scrape`` - each worker's /metrics -, ``scrape:URL,...`` - a fixed list of workers -, or
``prometheus:URL``) and the store (SQLite by default, PostgreSQL by URL); ``serve`` runs the reconcile loop
and the HTTP API together until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from fleetwise.control.controller import ControlConfig, Controller
from fleetwise.control.store import DEFAULT_URL, SqlStore
from fleetwise.errors import ConfigError

ACTUATORS = ("local", "kubernetes", "webhook")


def make_source(metrics: str):
    """``scrape`` | ``scrape:URL,...`` | ``prometheus:URL`` -> (MetricsSource, fixed worker URLs)."""
    from fleetwise.control.scrape import ScrapeSource

    kind, _, rest = metrics.partition(":")
    if kind == "scrape":
        urls = [u.strip() for u in rest.split(",") if u.strip()] if rest else []
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"--metrics: '{bad[0][:80]}' is not an http:// URL (scrape:URL,URL,...)")
        return ScrapeSource(), urls
    if kind == "prometheus":
        if not rest.startswith(("http://", "https://")):
            raise ConfigError("--metrics prometheus:URL needs Prometheus's http:// URL")
        from fleetwise.control.prometheus import PrometheusSource

        return PrometheusSource(rest), []
    raise ConfigError(f"--metrics: unknown source '{metrics[:40]}' (scrape, scrape:URL,..., prometheus:URL)")


def make_actuator(kind: str, config: ControlConfig, *, workers: list[str] = (), webhook_url: str | None = None,
                  fleet: str = "fw", spot_availability: float = 1.0, log_dir: Path | None = None,
                  namespace: str = "default", pool: str | None = None):
    """The named actuator for the controller's replica."""
    if kind == "local":
        from fleetwise.control.local import LocalActuator, LocalWorkerSpec
        from fleetwise.emulate.worker import EmulatorConfig

        spec = LocalWorkerSpec(EmulatorConfig(model=config.model, gpu=config.gpu, gpus=config.gpus,
                                              precision=config.precision, engine=config.engine,
                                              time_scale=config.time_scale, cold_start_s=config.cold_start_s or 0.0))
        return LocalActuator(spec, fleet=fleet, pool=pool or "local", spot_availability=spot_availability,
                             log_dir=log_dir)
    if kind == "webhook":
        if not webhook_url:
            raise ConfigError("--actuator webhook needs --webhook-url URL")
        from fleetwise.control.webhook import WebhookActuator

        return WebhookActuator(webhook_url, workers, pool=pool or "static")
    if kind == "kubernetes":
        from fleetwise.control.kubernetes import KubernetesActuator

        return KubernetesActuator(namespace=namespace, model=config.model)
    raise ConfigError(f"--actuator: unknown actuator '{kind}' (one of {', '.join(ACTUATORS)})")


def build_controller(config: ControlConfig, *, actuator: str = "local", metrics: str = "scrape",
                     store: str = DEFAULT_URL, **actuator_options) -> Controller:
    """A controller wired from names, as ``fleetwise control`` builds it."""
    source, urls = make_source(metrics)
    act = make_actuator(actuator, config, workers=urls, **actuator_options)
    return Controller(config, act, source, SqlStore(store))


def serve(controller: Controller, host: str = "127.0.0.1", port: int = 9000,
          started: Callable[[int], None] | None = None, stop_workers: bool = False) -> None:
    """Run the reconcile loop and the API until SIGINT / SIGTERM (then the current step finishes); with
    ``stop_workers`` the actuator's workers are stopped after (the local actuator's ``stop_all``)."""
    from fleetwise.control.app import create_app
    from fleetwise.emulate.serve import _uvicorn_server, bind

    uvicorn, server_class = _uvicorn_server()  # a server that leaves signal handling to us
    sock = bind(host, port)
    server = server_class(uvicorn.Config(create_app(controller), log_level="warning", lifespan="on"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if started is not None and server.started:
            started(sock.getsockname()[1])
        await task

    try:
        asyncio.run(main())
    finally:
        sock.close()
        controller.store.close()
        if stop_workers and hasattr(controller.actuator, "stop_all"):
            controller.actuator.stop_all()
