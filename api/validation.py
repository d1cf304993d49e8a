"""Request validation and the OpenAPI document, by spectree over pydantic models."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any, Literal, TypeVar

from flask import Request, request
from pydantic import BaseModel
from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

from api.auth import SERVICE_KEY_HEADER
from api.errors import APIError, invalid
from api.schemas import ErrorReply

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


SERVICE_KEY_SCHEME = "service_key"
# OpenAPI security requirements: the key when one is configured; "optional" also allows no key at all.
_SECURITY = {"required": [{SERVICE_KEY_SCHEME: []}], "optional": [{}, {SERVICE_KEY_SCHEME: []}]}


def documented(
    replies: dict[int, type[BaseModel]], *, service_key: Literal["required", "optional"] | None = None
) -> Callable[[F], F]:
    """Name a view's replies (status -> model) and whether it takes the service key, for the OpenAPI document.

    The marks ride on the function's attributes, which functools.wraps carries out through every decorator.
    """

    def mark(view: F) -> F:
        view.openapi_replies = replies  # type: ignore[attr-defined]
        view.openapi_service_key = service_key  # type: ignore[attr-defined]
        return view

    return mark


def view_replies(view: Callable[..., Any]) -> dict[int, type[BaseModel]] | None:
    """Every reply a documented view can give, by status, with the errors every such view shares."""
    replies = getattr(view, "openapi_replies", None)
    if replies is None:
        return None
    every = {**replies, 500: ErrorReply}
    if hasattr(view, "openapi_optional_body"):
        every.update({413: ErrorReply, 415: ErrorReply})
    if getattr(view, "openapi_service_key", None):
        every[401] = ErrorReply
    return dict(sorted(every.items()))


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    document = model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
    schemas.update(document.pop("$defs", {}))
    schemas[model.__name__] = document
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _phrase(status: int) -> str:
    return f"{HTTPStatus(status).phrase}: {{error: {{code, message, details}}}}"


class DocumentedSpecTree(SpecTree):
    """spectree's document, completed with every view's replies, its security and optional bodies."""

    @property
    def spec(self) -> dict[str, Any]:
        """The OpenAPI document, completed once from the marks `documented` and `json_object_body` leave."""
        if not hasattr(self, "_documented"):
            self._documented = self._complete(super().spec)
        return self._documented

    def _complete(self, document: dict[str, Any]) -> dict[str, Any]:
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for rule in self.app.url_map.iter_rules():
            view = self.app.view_functions[rule.endpoint]
            replies = view_replies(view)
            if replies is None:
                continue
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                operation = document["paths"][rule.rule][method.lower()]
                if operation.get("requestBody") and hasattr(view, "openapi_optional_body"):
                    operation["requestBody"]["required"] = False  # an empty body means every default
                if view.openapi_service_key:
                    operation["security"] = _SECURITY[view.openapi_service_key]
                operation["responses"] = {
                    str(status): {
                        "description": (model.__doc__ or "").splitlines()[0] if status < 400 else _phrase(status),
                        "content": {"application/json": {"schema": _schema_ref(model, schemas)}},
                    }
                    for status, model in replies.items()
                }
        return document


spec = DocumentedSpecTree(
    "flask",
    title="Drone Shop ⇄ Enterprise CRM integration API",
    version="0.1.0",
    path="api/integrations/crm/docs",
    before=_raise_as_api_error,
    validation_error_status=400,
    annotations=True,
    security_schemes=[
        SecurityScheme(
            name=SERVICE_KEY_SCHEME,
            data=SecuritySchemeData(
                type=SecureType.API_KEY,
                name=SERVICE_KEY_HEADER,
                field_in=InType.HEADER,
                description="Needed only when INTERNAL_SERVICE_KEY is configured",
            ),
        )
    ],
)


def json_object_body(view: F) -> F:
    """Reject a body that is present but not a JSON object (spectree would quietly read it as {})."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_json_object_body()
        return view(*args, **kwargs)

    wrapper.openapi_optional_body = True  # type: ignore[attr-defined]
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
