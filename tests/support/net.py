"""Ports and bounded waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until condition() is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def plain_http_client(**kwargs: object) -> httpx.Client:
    """An httpx client that sends exactly the headers a test gives it, even after telemetry patched httpx."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    client = httpx.Client(**kwargs)  # type: ignore[arg-type]
    HTTPXClientInstrumentor.uninstrument_client(client)
    return client
