"""Keep private CRM hosts out of anything a caller sees (DESIGN D9)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

PRIVATE_HOST_SUFFIXES = (".svc.cluster.local", ".cluster.local", ".svc", ".internal", ".local", ".lan", ".corp")
_CLUSTER_HOST = re.compile(
    r"(?<![\w.-])[\w.-]+\.(?:svc\.cluster\.local|cluster\.local|svc|internal)(?::\d+)?(?![\w-])", re.I
)
REDACTED_HOST = "[internal-host]"


def is_private_host(host: str) -> bool:
    """Whether a host is internal and must never reach a caller: cluster names, single labels, private IPs.

    Loopback stays public: on one machine the CRM sandbox's 127.0.0.1 URL is the one a caller uses.
    """
    host = host.lower().rstrip(".").strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ("." in host and host.endswith(PRIVATE_HOST_SUFFIXES)) or ("." not in host and host != "localhost")
    return address.is_private and not address.is_loopback


def scrub(text: str | None, backend_url: str, public_url: str) -> str | None:
    """Rewrite the backend CRM URL to the public one and redact every other internal host in text."""
    if not text:
        return text
    backend = urlsplit(backend_url) if backend_url else None
    if backend and backend.hostname and backend_url.rstrip("/") != (public_url or "").rstrip("/"):
        replacement_url = public_url or REDACTED_HOST
        text = re.sub(re.escape(backend_url.rstrip("/")), replacement_url.rstrip("/"), text, flags=re.I)
        public_host = urlsplit(public_url).hostname if public_url else None
        # The host alone (any case, with or without the port) can appear in proxy pages or driver errors.
        host_pattern = rf"(?<![\w.-]){re.escape(backend.hostname)}(?::\d+)?(?![\w-])"
        text = re.sub(host_pattern, public_host or REDACTED_HOST, text, flags=re.I)
    return _CLUSTER_HOST.sub(REDACTED_HOST, text)
