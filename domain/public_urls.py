"""Keep private CRM hosts out of anything a caller sees (DESIGN D9)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PRIVATE_HOST_SUFFIXES = (".svc.cluster.local", ".cluster.local", ".svc", ".internal")
_CLUSTER_HOST = re.compile(r"\b[\w.-]+\.(?:svc\.cluster\.local|cluster\.local|svc|internal)(?::\d+)?\b", re.I)
REDACTED_HOST = "[internal-host]"


def is_private_host(host: str) -> bool:
    """Whether a host name is cluster-internal and must never reach a caller."""
    return host.lower().rstrip(".").endswith(PRIVATE_HOST_SUFFIXES)


def scrub(text: str | None, backend_url: str, public_url: str) -> str | None:
    """Rewrite the backend CRM URL to the public one and redact any other internal host in text."""
    if not text:
        return text
    backend = urlsplit(backend_url)
    public = urlsplit(public_url) if public_url else None
    if public_url and backend_url != public_url:
        text = text.replace(backend_url, public_url)
        if backend.netloc and public and backend.netloc != public.netloc:
            text = re.sub(rf"(?<![\w.-]){re.escape(backend.netloc)}(?![\w.-])", public.netloc, text)
    elif not public_url and backend.netloc:
        text = text.replace(backend_url, REDACTED_HOST)
        text = re.sub(rf"(?<![\w.-]){re.escape(backend.netloc)}(?![\w.-])", REDACTED_HOST, text)
    return _CLUSTER_HOST.sub(REDACTED_HOST, text)
