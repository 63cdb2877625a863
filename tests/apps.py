"""An ASGI app served by uvicorn on a free loopback port in a background thread, always stopped::

    with AppServer(create_app(...)) as server:
        httpx.get(server.url + "/health")
"""

from __future__ import annotations

import socket
import threading
import time


class AppServer:
    def __init__(self, app, start_timeout_s: float = 10.0) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.start_timeout_s = start_timeout_s

    def __enter__(self) -> AppServer:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
