"""Request validation and the OpenAPI document, by spectree over pydantic models."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Request, request
from spectree import SpecTree

from api.errors import APIError, invalid

F = TypeVar("F", bound=Callable[..., Any])


def _field_name(location: str, loc: tuple[Any, ...] | list[Any]) -> str:
    names = [str(part) for part in loc if part not in ("__root__",)]
    return ".".join(names) if names else location


def _raise_as_api_error(req: Request, resp: Any, req_validation_error: Any, instance: Any, *_: Any) -> None:
    """spectree's `before` hook: turn a validation failure into our 400, naming the field."""
    if req_validation_error is None:
        return
    first = req_validation_error.errors()[0]
    location = "query" if req.method in ("GET", "DELETE") else "body"
    field = _field_name(location, first.get("loc", ()))
    raise invalid(field, first.get("msg", "invalid value"), first.get("input"))


spec = SpecTree(
    "flask",
    title="Drone Shop ⇄ Enterprise CRM integration API",
    version="0.1.0",
    path="api/integrations/crm/docs",
    before=_raise_as_api_error,
    validation_error_status=400,
    annotations=True,
)


def json_object_body(view: F) -> F:
    """Reject a body that is present but not a JSON object (spectree would quietly read it as {})."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_json_object_body()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json_object_body() -> None:
    if not request.get_data(cache=True):
        return
    if not request.is_json:
        raise APIError(
            415,
            "unsupported_media_type",
            "body: send it as JSON with Content-Type: application/json",
            {"field": "body", "reason": f"Content-Type is {request.mimetype or 'missing'}"},
        )
    try:
        body = json.loads(request.get_data(cache=True), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
        raise APIError(400, "invalid_body", f"body: {reason}", {"field": "body", "reason": reason}) from None
    if not isinstance(body, dict):
        kind = type(body).__name__
        raise APIError(400, "invalid_body", "body: must be a JSON object", {"field": "body", "reason": f"got {kind}"})
