"""The shared service key (D12): constant-time comparison, never logged or echoed."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import request

from api.context import integration
from api.errors import APIError

SERVICE_KEY_HEADER = "X-Internal-Service-Key"
F = TypeVar("F", bound=Callable[..., Any])


def service_key_matches(presented: str | None, expected: str) -> bool:
    """Compare in constant time; surrounding whitespace is trimmed, as the CRM does.

    WSGI hands header values over as latin-1 text, so the raw bytes are recovered before comparing with
    the UTF-8 bytes of the configured key (a non-ASCII key would otherwise never match).
    """
    raw = (presented or "").encode("latin-1", errors="replace").strip()
    return hmac.compare_digest(raw, expected.encode("utf-8"))


def check_service_key() -> None:
    """Raise 401 unless the request carries the configured X-Internal-Service-Key (none configured: pass)."""
    key = integration().settings.internal_service_key
    if key is not None and not service_key_matches(request.headers.get(SERVICE_KEY_HEADER), key.get_secret_value()):
        raise APIError(401, "unauthorized", f"missing or invalid {SERVICE_KEY_HEADER}")


def require_service_key(view: F) -> F:
    """Demand X-Internal-Service-Key when INTERNAL_SERVICE_KEY is configured."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_service_key()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
