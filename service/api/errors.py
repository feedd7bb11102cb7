"""Exception handlers: field-level 422s that never echo input, JSON HTTP errors.

Unhandled exceptions (bugs) are logged and answered as JSON 500 by
:class:`service.api.request_context.RequestIdMiddleware`, where the request id is still known.

422 bodies keep pydantic's ``type``, ``loc`` and ``msg`` (and ``ctx`` when it holds only
constraint values such as ``{"ge": 0}``) and drop ``input`` and ``url``: a customer's data
never comes back in an error, and a NaN in the input can no longer break the error response
itself (FastAPI's default handler echoes the input and fails to encode NaN as JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

_SAFE_CTX_TYPES = (int, float, str, bool)


def _clean_ctx(ctx: Any) -> dict[str, Any] | None:
    if not isinstance(ctx, dict):
        return None
    clean = {k: v for k, v in ctx.items() if isinstance(v, _SAFE_CTX_TYPES)}
    # a value_error's ctx holds the exception object, whose text is already in msg
    return clean or None


def public_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the offending input: ``type``, ``loc``, ``msg`` (``ctx``)."""
    out = []
    for error in errors:
        item: dict[str, Any] = {
            "type": error.get("type", "value_error"),
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", "invalid value"),
        }
        if ctx := _clean_ctx(error.get("ctx")):
            item["ctx"] = ctx
        out.append(item)
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
    """HTTP errors as ``{"detail": ...}`` with their headers (e.g. WWW-Authenticate)."""
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


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
    outer["description"] = "422: every problem found in the request."
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
