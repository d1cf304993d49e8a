"""Serve a sandbox app over real HTTP on loopback, in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import threading
from contextlib import suppress
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.app import DroppedConnection, SandboxConfig, create_app
from sandbox.faults import parse_rules
from sandbox.state import SandboxState

logger = logging.getLogger(__name__)


def is_loopback_host(host: str) -> bool:
    """Tell whether `host` is localhost or a loopback IP address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, made to look like uvicorn and to reset connections that a fault drops."""

    # HTTP/1.1 responses like uvicorn's. Werkzeug still sends "Connection: close" on every response, so
    # unlike the real CRM no connection is kept alive (sandbox/README.md, "Where it differs").
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "uvicorn"

    def log(self, level: str, message: str, *args: Any) -> None:
        logger.debug("%s %s", level, message % args if args else message)

    def connection_dropped(self, error: BaseException, environ: dict[str, Any] | None = None) -> None:
        # Without this the handler would wait for a next request on a connection it has given up on.
        self.close_connection = True
        if isinstance(error, DroppedConnection):
            # A zero linger turns the coming close() into a TCP RST, like a crashed upstream.
            with suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class SandboxServer:
    """A running CRM sandbox; use as a context manager or call start() and stop()."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **config_kwargs: Any,
    ) -> None:
        if config is not None and config_kwargs:
            raise TypeError("pass either a SandboxConfig or keyword settings, not both")
        if not is_loopback_host(host):
            raise ValueError(f"the sandbox only listens on loopback addresses, not {host!r}")
        self.config = config or SandboxConfig(**config_kwargs)
        self.host = host
        self._requested_port = port
        self.app = create_app(self.config)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> SandboxServer:
        """Bind the port and serve in a daemon thread; port 0 picks a free port."""
        if self._stopped:
            raise RuntimeError("a stopped SandboxServer cannot be restarted; create a new one")
        if self._server is not None:
            return self
        # Binding ourselves turns a busy port into an OSError; werkzeug would call sys.exit() instead.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self._requested_port))
            listener.listen(128)
            self._server = make_server(
                self.host,
                listener.getsockname()[1],
                self.app,
                threaded=True,
                request_handler=_RequestHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="crm-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Release held requests, stop accepting connections and close the socket."""
        if self._stopped:
            return
        self._stopped = True
        self.state.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def state(self) -> SandboxState:
        """The shared state behind the app."""
        return self.app.extensions["crm_sandbox"]

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """Base URL such as http://127.0.0.1:54321."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the fault rules; raises FaultRuleError (a ValueError) naming a bad field."""
        self.state.faults.replace(parse_rules(rules))

    def clear_faults(self) -> None:
        """Remove every fault rule and release hung requests."""
        self.state.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Return the active fault rules."""
        return self.state.faults.snapshot()

    def requests(self, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Return the recorded requests, optionally only those under `path_prefix`."""
        return self.state.requests.snapshot(path_prefix)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.state.requests.clear()

    def wait_for_requests(self, count: int = 1, path_prefix: str | None = None, timeout: float = 5.0) -> bool:
        """Block until `count` matching requests were received (faults already decided); False on timeout."""
        return self.state.requests.wait_for(count, path_prefix, timeout)

    def set_variants(self, envelope: str | None = None, field_variant: str | None = None) -> dict[str, str]:
        """Switch the list envelope and/or customer field names."""
        return self.state.set_variants(envelope, field_variant)

    def reset(self) -> None:
        """Reseed customers, clear faults and recorded requests, restore configured variants."""
        self.state.reset()
