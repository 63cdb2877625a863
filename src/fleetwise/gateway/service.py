"""Assemble and serve a gateway: the library calls behind ``fleetwise gateway``.

``--state`` picks where shared state lives: ``memory`` (one process: budgets, cache and usage in memory),
``sqlite:///PATH`` (budgets and usage in a file; cache in memory), ``redis://...`` (budgets, cache and usage
in Redis: several gateway processes share them), ``postgresql://...`` (budgets and usage in PostgreSQL; cache in
memory). With ``--workers N`` uvicorn runs N processes; their state must then be shared (not ``memory``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fleetwise.errors import ConfigError
from fleetwise.gateway.config import GatewayFile, load_gateway_file

ENV = "FLEETWISE_GATEWAY_SPEC"


def gateway_file(config: str | Path | None = None, backends: list[str] = (), controller: str | None = None
                 ) -> GatewayFile:
    """The config file (if any) with ``--backend NAME=URL`` and ``--controller URL`` added."""
    cfg = load_gateway_file(config) if config else GatewayFile()
    extra: dict[str, list[str]] = {m: list(u) for m, u in cfg.backends.items()}
    for item in backends:
        name, sep, url = item.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ConfigError(f"--backend '{item[:80]}' must be NAME=URL (e.g. llama-3.1-8b=http://127.0.0.1:8001)")
        extra.setdefault(name, []).append(url.rstrip("/"))
    update = {"backends": extra}
    if controller:
        update["controller"] = controller
    try:
        return GatewayFile.model_validate(cfg.model_dump() | update)
    except ValueError as exc:
        raise ConfigError(f"gateway options: {str(exc).splitlines()[-1].strip()[:200]}") from None


def build_gateway(cfg: GatewayFile, state: str = "memory"):
    """A :class:`~fleetwise.gateway.app.Gateway` with its state in ``state``."""
    from fleetwise.gateway.app import Gateway
    from fleetwise.gateway.cache import MemoryCache, RedisCache
    from fleetwise.gateway.ledger import make_ledger
    from fleetwise.gateway.usage import make_usage

    cache = RedisCache(state) if state.startswith("redis://") else MemoryCache(cfg.cache.max_entries)
    return Gateway.build(cfg, make_ledger(state), cache, make_usage(state))  # opened when the app starts


def app_from_env():
    """The app of one worker process (uvicorn ``--workers``): its spec comes in :data:`ENV`."""
    from fleetwise.gateway.app import create_app

    spec = json.loads(os.environ[ENV])
    cfg = GatewayFile.model_validate(spec["config"])
    return create_app(build_gateway(cfg, spec["state"]))


def serve(cfg: GatewayFile, state: str = "memory", host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          started=None) -> None:
    """Serve until SIGINT/SIGTERM."""
    import uvicorn

    if workers > 1 and state == "memory":
        raise ConfigError("--workers > 1 needs shared state: --state redis://... (or sqlite:///..., "
                          "postgresql://... for budgets and usage)")
    if workers > 1:
        os.environ[ENV] = json.dumps({"config": cfg.model_dump(mode="json"), "state": state})
        uvicorn.run("fleetwise.gateway.service:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False)
        return
    from fleetwise.emulate.serve import bind
    from fleetwise.gateway.app import create_app

    sock = bind(host, port)
    if started is not None:
        started(sock.getsockname()[1])
    config = uvicorn.Config(create_app(build_gateway(cfg, state)), log_level="warning", access_log=False,
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
