"""Running the simulator: in the foreground (``run_sim``) or in a test thread (``SimServer``)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from sim.app import ADMIN_PREFIX, create_sim_app
from sim.config import SimConfig
from sim.simulator import Simulator


def run_sim(
    port: int = 8090,
    host: str = "127.0.0.1",
    seed: int = 0,
    profile: str = "realistic",
    log_level: str = "info",
    **overrides: Any,
) -> None:
    """Serve the simulator until interrupted (what ``mcjobs sim`` calls).

    ``overrides`` are :class:`SimConfig` fields applied on top of the profile.
    """
    config = SimConfig.for_profile(profile, seed=seed, **overrides)
    uvicorn.run(
        create_sim_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )


class SimServer:
    """The simulator on a free 127.0.0.1 port in a background thread.

    >>> with SimServer(SimConfig.for_profile("fast")) as sim:
    ...     client = MetaChatClient(base_url=sim.base_url, ...)
    ...     sim.stats()["tasks_created"]

    ``simulator`` is the live state object; ``stats``/``configure``/``reset`` go through it.
    """

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1") -> None:
        self.config = config or SimConfig.for_profile("fast")
        self.host = host
        self.app = create_sim_app(self.config)
        self.simulator: Simulator = self.app.state.simulator
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``METACHAT_BASE_URL`` should be: the root plus ``/open/v1``."""
        return self.root_url + self.config.base_path.rstrip("/")

    @property
    def llm_base_url(self) -> str:
        """What ``METACHAT_LLM_BASE_URL`` should be: the root plus ``/v1``."""
        return self.root_url + self.config.llm_base_path.rstrip("/")

    def start(self, timeout: float = 10.0) -> SimServer:
        """Bind a free port, serve in a thread, and return once the simulator answers."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        server_config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(server_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sim-server", daemon=True
        )
        self._thread.start()
        self._wait_until_up(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_sim/stats`` shows them."""
        return self.simulator.stats_view()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change config fields (and ``balance``) while running."""
        return self.simulator.configure(changes)

    def reset(self) -> None:
        """Forget all tasks and counters."""
        self.simulator.reset()

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.root_url}{ADMIN_PREFIX}/health"
        while True:
            try:
                if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not (self._thread and self._thread.is_alive()):
                self.stop()
                raise RuntimeError(f"simulator did not answer on {url} within {timeout}s")
            time.sleep(0.02)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
