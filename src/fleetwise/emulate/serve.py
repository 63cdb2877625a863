"""Serving emulated workers: K independent workers on K ports in one process and one event loop.

A 2-core machine cannot hold a fleet of processes, so ``--workers K`` runs K uvicorn servers side by side in one
loop, each with its own engine, metrics and spot notice. :class:`WorkerThread` runs the same in a background
thread, for tests and for Python users who want a fleet next to their own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from fleetwise.emulate.worker import DEFAULT_NOTICE_S, EmulatorConfig, Worker
from fleetwise.errors import ConfigError


@dataclass(frozen=True)
class ServeOptions:
    """Where the workers listen, and a scheduled spot notice."""

    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (8001,)  # 0 = any free port
    interrupt_at_s: float | None = None  # emulated seconds after start, on every worker
    interrupt_kind: str = "aws"
    notice_s: float = DEFAULT_NOTICE_S


def _uvicorn_server():
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server without its own signal handling: one handler stops every worker of the process."""

        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return uvicorn, _Server


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one); refused ports are a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Fleet:
    """K workers and their servers in the running event loop."""

    def __init__(self, config: EmulatorConfig, options: ServeOptions) -> None:
        uvicorn, server_cls = _uvicorn_server()
        from fleetwise.emulate.app import create_app

        self.sockets = [bind(options.host, p) for p in options.ports]
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.host = options.host
        self.options = options
        self.workers: list[Worker] = []
        self.servers = []
        for k, _ in enumerate(self.sockets):
            server_box: list = []
            worker = Worker(replace(config, seed=config.seed + k), name=str(k),
                            on_reclaim=lambda box=server_box: _drop_connections(box[0]))
            # httptools (uvicorn[standard]) parses HTTP in C; no proxy-header rewriting: the emulator never
            # looks at client addresses, and the middleware is one more call on every request.
            cfg = uvicorn.Config(create_app(worker), log_level="warning", access_log=False, lifespan="on",
                                 timeout_graceful_shutdown=5, http="httptools", proxy_headers=False, backlog=2048)
            server = server_cls(cfg)
            server_box.append(server)
            self.workers.append(worker)
            self.servers.append(server)

    @property
    def urls(self) -> list[str]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return [f"http://{host}:{p}" for p in self.ports]

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        """Serve until every worker has stopped (reclaimed, or :meth:`stop`)."""
        tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, sock in zip(self.servers, self.sockets)]
        while not all(s.started for s in self.servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        if self.options.interrupt_at_s is not None:
            for w in self.workers:
                asyncio.get_running_loop().call_later(w.scaled(self.options.interrupt_at_s), w.interrupt,
                                                      self.options.notice_s, self.options.interrupt_kind)
        if started is not None:
            started()
        await asyncio.gather(*tasks)

    def stop(self) -> None:
        """Ask every server to shut down (open streams get a few seconds to finish)."""
        for s in self.servers:
            s.should_exit = True


def _drop_connections(server) -> None:
    """A reclaimed machine: every open connection is cut (no response completes) and the server exits."""
    for conn in list(server.server_state.connections):
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()
    server.should_exit = True  # not force_exit: the app's shutdown still runs (it stops the engine cleanly)


def run(config: EmulatorConfig, options: ServeOptions, started: Callable[[Fleet], None] | None = None) -> Fleet:
    """Serve workers in this thread until they are all reclaimed or SIGINT/SIGTERM arrives."""
    loop_factory = _loop_factory()

    async def main() -> Fleet:
        fleet = Fleet(config, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, fleet.stop)
        await fleet.serve(lambda: _settled(fleet, started))
        return fleet

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def _settled(fleet: Fleet, started: Callable[[Fleet], None] | None) -> None:
    """Serving has begun: move the start-up heap out of the garbage collector's reach, then announce.

    The catalog, FastAPI and pydantic leave ~10^5 long-lived objects; every full collection walked them all
    (~60 ms on a 2-core machine, a stall of every stream and request of the process). Frozen, they are never
    scanned again; objects made while serving are collected as usual. Only :func:`run` does this: it owns
    its process, a :class:`WorkerThread` shares someone else's.
    """
    gc.collect()
    gc.freeze()
    if started is not None:
        started(fleet)


def _loop_factory():
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop


class WorkerThread:
    """Emulated workers served from a background thread: ``with WorkerThread(config, n=4) as fleet: fleet.urls``."""

    def __init__(self, config: EmulatorConfig, n: int = 1, host: str = "127.0.0.1", **options) -> None:
        self.config = config
        self.options = ServeOptions(host=host, ports=(0,) * n, **options)
        self.fleet: Fleet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="fleetwise-emulate")

    @property
    def urls(self) -> list[str]:
        return self.fleet.urls if self.fleet else []

    def _main(self) -> None:
        factory = _loop_factory()
        loop = factory() if factory else asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main():
            self.fleet = Fleet(self.config, self.options)
            await self.fleet.serve(self._ready.set)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    def start(self, timeout_s: float = 30.0) -> WorkerThread:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("emulated workers did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the workers' event loop and return its result (a coroutine is awaited)."""
        async def run():
            out = fn(*args)
            return await out if asyncio.iscoroutine(out) else out
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.fleet is not None and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self.fleet.stop)
        self._thread.join(timeout_s)

    def __enter__(self) -> WorkerThread:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
