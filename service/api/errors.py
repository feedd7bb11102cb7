"""Exception handlers: field-level 422s that never echo input, JSON HTTP errors.

Unhandled exceptions (bugs) are logged and answered as JSON 500 by
:class:`service.api.request_context.RequestIdMiddleware`, where the request id is still known.

422 bodies keep pydantic's ``type``, ``loc`` and ``msg`` (and ``ctx`` when it holds only
constraint values such as ``{"ge": 0}``) and drop ``input`` and ``url``: a customer's data
never comes back in an error, and a NaN in the input can no longer break the error response
itself (FastAPI's default handler echoes the input and fails to encode NaN as JSON).

At most :data:`MAX_ERRORS` problems are listed, then one ``too_many_errors`` item says how many
more there were: a 7 KB body of 1,000 empty feature rows has 58,000 problems, 5.5 MB as JSON.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

_SAFE_CTX_TYPES = (int, float, str, bool)
MAX_ERRORS = 100


def _clean_ctx(ctx: Any) -> dict[str, Any] | None:
    if not isinstance(ctx, dict):
        return None
    clean = {k: v for k, v in ctx.items() if isinstance(v, _SAFE_CTX_TYPES)}
    # a value_error's ctx holds the exception object, whose text is already in msg
    return clean or None


def public_errors(errors: Sequence[Any], limit: int = MAX_ERRORS) -> list[dict[str, Any]]:
    """Validation errors without the offending input: ``type``, ``loc``, ``msg`` (``ctx``).

    Args:
        errors: pydantic's error dicts.
        limit: the most problems listed; beyond it one ``too_many_errors`` item (``loc``
            ``["body"]``) counts the rest.

    Returns:
        At most ``limit + 1`` items.
    """
    out: list[dict[str, Any]] = []
    for error in errors[:limit]:
        item: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", "invalid value"),
        }
        if ctx := _clean_ctx(error.get("ctx")):
            item["ctx"] = ctx
        out.append(item)
    if len(errors) > limit:
        left_out = len(errors) - limit
        out.append(
            {
                "type": "too_many_errors",
                "loc": ["body"],
                "msg": f"{left_out:,} more problems are not listed (the first {limit} are)",
            }
        )
    return out


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with field-level messages and no echoed input."""
    assert isinstance(exc, RequestValidationError)
    errors = public_errors(exc.errors())
    logger.info(
        "422 on %s: %s",
        request.url.path,
        [(".".join(map(str, e["loc"])), e["type"]) for e in errors[:10]],
    )
    return JSONResponse({"detail": errors}, status_code=422)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """HTTP errors as ``{"detail": ...}`` with their headers (e.g. WWW-Authenticate).

    A 405's ``Allow`` lists the methods of every route at the path: Starlette names only the
    first route that matched the path (``POST`` for ``/v1/decisions``, which also has ``GET``).
    """
    assert isinstance(exc, HTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI spec lists at the request's path (HEAD with GET), sorted."""
    methods: set[str] = set()
    for pattern, documented in _path_methods(request.app):
        if pattern.fullmatch(request.url.path):
            methods |= documented
    return sorted(methods)


def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path pattern, methods) of every documented path, built once per app."""
    cached: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "path_methods", None)
    if cached is None:
        cached = []
        for path, operations in app.openapi()["paths"].items():
            methods = {method.upper() for method in operations}
            if "GET" in methods:
                methods.add("HEAD")
            template = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))
            cached.append((re.compile(template), methods))
        app.state.path_methods = cached
    return cached


def document_validation_errors(schema: dict[str, Any]) -> None:
    """Make the OpenAPI 422 schema say what :func:`public_errors` sends (no ``input``)."""
    schemas = schema.get("components", {}).get("schemas", {})
    if "ValidationError" not in schemas or "HTTPValidationError" not in schemas:
        return
    item = schemas["ValidationError"]
    item["description"] = "One problem with the request. The value sent is never echoed back."
    properties = item.setdefault("properties", {})
    properties.pop("input", None)
    texts = {
        "loc": "Where: `body`/`query`/`path`, then field names and list positions.",
        "msg": "What is wrong, in words.",
        "type": "Kind of problem, e.g. `missing`, `finite_number`, `feature_rule`.",
        "ctx": 'The constraint broken, e.g. `{"ge": 0}` (when there is one).',
    }
    for name, text in texts.items():
        if name in properties:
            properties[name]["description"] = text
    outer = schemas["HTTPValidationError"]
    outer["description"] = (
        f"422: the problems found in the request; after the first {MAX_ERRORS}, one "
        "`too_many_errors` item counts the rest."
    )
    outer.setdefault("properties", {}).get("detail", {})["description"] = "The problems."


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` and document the 422 body in its OpenAPI schema."""
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build_openapi()
        if fresh:
            document_validation_errors(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
