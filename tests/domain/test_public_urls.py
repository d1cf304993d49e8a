"""No private CRM host reaches a caller (DESIGN D9)."""

from __future__ import annotations

import pytest

from domain.public_urls import is_private_host, scrub

BACKEND = "http://crm-backend.corp.example:8080"
PUBLIC = "https://crm.example.com"


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("crm.crm.svc.cluster.local", True),
        ("crm.svc", True),
        ("crm", True),
        ("db.internal", True),
        ("10.1.2.3", True),
        ("192.168.0.7", True),
        ("localhost", False),
        ("127.0.0.1", False),
        ("crm.example.com", False),
        ("8.8.8.8", False),
    ],
)
def test_private_hosts(host: str, private: bool) -> None:
    assert is_private_host(host) is private


@pytest.mark.parametrize(
    "text",
    [
        f"GET {BACKEND}/api/customers failed",
        "502 Bad Gateway from crm-backend.corp.example",
        "upstream CRM-BACKEND.CORP.EXAMPLE:8080 refused",
        "connect to crm-0.crm.prod.svc.cluster.local:8080 timed out",
    ],
)
def test_scrub_leaves_no_backend_or_cluster_host(text: str) -> None:
    cleaned = scrub(text, BACKEND, PUBLIC) or ""
    assert "crm-backend" not in cleaned.lower()
    assert "svc.cluster.local" not in cleaned


def test_scrub_rewrites_the_backend_url_to_the_public_one() -> None:
    assert scrub(f"GET {BACKEND}/api/customers", BACKEND, PUBLIC) == f"GET {PUBLIC}/api/customers"
    assert scrub("nothing here", BACKEND, PUBLIC) == "nothing here"
    assert scrub(None, BACKEND, PUBLIC) is None


def test_without_a_public_url_the_backend_is_redacted() -> None:
    assert scrub(f"{BACKEND}/x down", BACKEND, "") == "[internal-host]/x down"


def test_a_public_backend_is_left_alone() -> None:
    assert scrub("http://127.0.0.1:8090/api/customers", "http://127.0.0.1:8090", "http://127.0.0.1:8090") == (
        "http://127.0.0.1:8090/api/customers"
    )
