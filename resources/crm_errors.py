"""What can go wrong talking to the CRM, as specific exceptions raised at the edge (CONTRACT §1)."""

from __future__ import annotations

from typing import Any


class CRMError(Exception):
    """Base class; the message never carries the backend host."""

    #: Whether this failure says the CRM itself is unwell (feeds the circuit breaker, D7).
    counts_as_outage = True
    #: Whether the same request may succeed if sent again.
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class CRMUnavailable(CRMError):
    """No usable answer: connection refused or reset, timeout, incomplete read."""

    retryable = True

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        #: False when the request never left (connect failed), so even a POST may be resent.
        self.sent = sent


class CRMServerError(CRMError):
    """A 5xx answer."""

    retryable = True

    def __init__(self, message: str, *, status: int, error_type: str | None = None, details: Any = None):
        super().__init__(message, status=status, details=details)
        self.error_type = error_type


class CRMConflict(CRMServerError):
    """The CRM's 500 for a unique-constraint violation: the row already exists (CONTRACT §3, §4)."""

    counts_as_outage = False
    retryable = False


class CRMQueryRejected(CRMServerError):
    """The CRM's 500 for SQL it built from our parameters (a quote in `search`, a bad `sort_by`)."""

    counts_as_outage = False
    retryable = False


class CRMBadResponse(CRMError):
    """An answer we cannot read: HTML from a proxy, truncated or malformed JSON, an unknown envelope."""

    retryable = True


class CRMClientError(CRMError):
    """A 4xx answer: our request was wrong, the CRM is fine."""

    counts_as_outage = False


class CRMValidationError(CRMClientError):
    """The CRM's 422 (FastAPI validation), e.g. limit above 500."""


class CRMRateLimited(CRMError):
    """429: back-pressure, not an outage."""

    counts_as_outage = False
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class CRMNotFound(CRMError):
    """The CRM's 200 with {"error": "... not found"}."""

    counts_as_outage = False


class CRMRejected(CRMError):
    """The CRM's 200 with another {"error": ...}: a business rule said no."""

    counts_as_outage = False


class CRMCircuitOpen(CRMError):
    """The shared circuit breaker is open; the CRM was not called."""

    counts_as_outage = False
