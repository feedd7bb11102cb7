"""Assembles the keepwise HTTP API: settings, middleware, error handlers, routers, lifespan.

``create_app(settings)`` builds the app; nothing happens at import. At start-up (lifespan) the
API keys are read (a bad key file stops the start), the store is opened and migrated, and the
model is loaded; if the model cannot be loaded the service still starts, answers 503 on scoring
routes and ``/health/ready`` until an admin reloads successfully. ``run()`` serves it with
uvicorn (uvloop, httptools, one worker: the model lives in the process).

Routes: ``POST /v1/recommendations``, ``GET /v1/customers/{customer_id}/recommendation``,
``POST /v1/decisions``, ``GET /v1/decisions``, ``GET /v1/model``, ``POST /v1/model/reload``
(admin router), ``GET /health/live``, ``GET /health/ready``; docs at ``/docs`` and ``/redoc``,
whose scripts the app serves itself (no CDN).
"""

from __future__ import annotations

import errno
import logging
import logging.config
import socket
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.api import errors
from service.api.deps import get_model_loader, get_store_opener, open_store
from service.api.http_limits import server_config
from service.api.keys import KeyRing
from service.api.request_context import BodySizeLimitMiddleware, RequestIdMiddleware
from service.api.routes import (
    admin,
    approvals,
    customers,
    decisions,
    health,
    model,
    recommendations,
)
from service.api.routes.model import api_version
from service.api.schemas import MAX_BATCH
from service.api.scoring import prepare_model
from service.api.serving import ModelHolder, ModelLoadError, settle_heap
from service.api.wide_scoring import install_openapi as install_table_openapi
from service.settings import Settings, get_settings
from service.storage import StoreError
from service.storage.engine import parse_url
from service.web import install as install_web

logger = logging.getLogger(__name__)

DESCRIPTION = f"""
keepwise answers, for every customer, the question a manager has to decide: **keep them as they
are (retain), make a remedy offer (compensate), or end the relationship (end)** — with the money
behind the answer, plain-language reasons and who must approve it.

**Authentication.** Send an API key as `Authorization: Bearer <key>`. Roles: *viewer* (read
recommendations, decisions and the model; score feature rows), *agent* (also record decisions),
*admin* (also reload the model). No or an unknown key: 401; a key whose role is too low: 403.
Only `/health/*` needs no key.

**Scope.** A key limited to an account manager and/or a region sees and records only its own
customers; every other customer answers 404, exactly like an unknown one. For
`POST /v1/recommendations` a row's owner is the store's (from the last batch run), whatever the
row claims: a scoped key cannot score a customer the store does not know.

**Limits.** At most {MAX_BATCH:,} customers per `POST /v1/recommendations`; request bodies
over {{max_body_bytes:,}} bytes answer 413 (a full batch of feature rows is about 1.7 MB).

**Errors.** 422 lists field-level problems (`loc`, `msg`, `type`) and never echoes the values
sent. 503 means no model is loaded yet or the store is unavailable (nothing was written).
Every answer carries `X-Request-ID` (yours if you send one), also found in the service log.
"""

TAGS = [
    {"name": "recommendations", "description": "Retain, compensate or end, with the reasons."},
    {"name": "decisions", "description": "After-action reports: the decision log."},
    {"name": "approvals", "description": "Recommendations waiting for a tier; verdicts."},
    {"name": "model", "description": "The model and policy being served."},
    {"name": "admin", "description": "Model reload (role admin)."},
    {"name": "health", "description": "Probes for the orchestrator (no key)."},
]


def _resolve(app: FastAPI, factory: Callable[[], Any]) -> Any:
    """A start-up factory, honouring ``app.dependency_overrides`` as request dependencies do."""
    return app.dependency_overrides.get(factory, factory)()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the store (migrated), load the model, close the store on shutdown."""
    settings: Settings = app.state.settings
    app.state.models = holder = ModelHolder()
    app.state.explainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keepwise-explain")
    app.state.store = await run_in_threadpool(_resolve(app, get_store_opener), settings)
    loader = _resolve(app, get_model_loader)
    try:
        holder.swap(await run_in_threadpool(prepare_model, loader, settings))
    except ModelLoadError as error:
        holder.last_error = "the model could not be loaded at start-up; see the service log"
        logger.error("starting without a model (not ready): %s", error)
    settle_heap(collect=False)
    try:
        yield
    finally:
        app.state.explainer.shutdown(wait=False)
        close = getattr(app.state.store, "close", None)
        if callable(close):
            await run_in_threadpool(close)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API.

    Args:
        settings: Configuration; :func:`service.settings.get_settings` (the environment) when
            omitted.

    Returns:
        The application; the store and the model are opened when it starts (lifespan).

    Raises:
        service.api.keys.KeyConfigError: The API key file or entries are invalid.
    """
    settings = settings or get_settings()
    keyring = KeyRing.from_sources(settings.api_keys_file, settings.api_keys)
    if not len(keyring):
        logger.warning("no API keys are configured: every route but /health answers 401")
    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts from the app itself
    # (a maintained package's copy), not from a CDN, so the docs work without internet
    app = FastAPIOffline(
        title="keepwise",
        summary="Retain, compensate or end: customer decisions with the money and the reasons.",
        description=DESCRIPTION.format(max_body_bytes=settings.max_body_bytes),
        version=api_version(),
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = keyring
    errors.install(app)
    install_table_openapi(app)  # /openapi.json shows the served wide-table model's columns
    # added last = outermost: the request id wraps everything, including 413 answers
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    for router in (
        recommendations.router,
        customers.router,
        decisions.router,
        approvals.router,
        model.router,
        admin.router,
        health.router,
    ):
        app.include_router(router)
    install_web(app, settings)  # the managers' web page under /web (service/web)
    return app


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """dictConfig for the service: one stream handler, request id on every line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "service.api.request_context.RequestIdFilter"}},
        "formatters": {
            "plain": {
                "()": "service.api.request_context.SafeFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


class ServeError(RuntimeError):
    """The server could not start (e.g. the port is taken); the message says why."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError` unless ``host:port`` can be listened on now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServeError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
                + (" (another server runs there?)" if error.errno == errno.EADDRINUSE else "")
            ) from None


def check_store(settings: Settings) -> None:
    """Raise :class:`ServeError` unless the configured store opens and migrates now."""
    try:
        store = open_store(settings)
    except StoreError as error:
        try:
            where = parse_url(settings.database_url).render_as_string(hide_password=True)
        except StoreError:
            where = "KEEPWISE_DATABASE_URL"
        raise ServeError(f"cannot open the store {where}: {error}") from None
    store.close()


def _settings_problems(invalid: ValidationError) -> str:
    """``KEEPWISE_<FIELD>: message`` for each problem, without the value."""
    return "; ".join(
        f"KEEPWISE_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}"
        for problem in invalid.errors(include_input=False)
    )


def run(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API with uvicorn (uvloop, httptools, one worker) until interrupted.

    The connection limits of :mod:`service.api.http_limits` apply (head size, head and body
    deadlines, keep-alive). Before uvicorn starts, the settings are read, the port is checked,
    the key file is read and the store is opened and migrated once, so that each of these
    failures is one sentence (:class:`ServeError`) instead of a failed start-up in the log.

    Args:
        host: Interface to bind.
        port: TCP port.

    Raises:
        KeyConfigError: The API key file or entries are invalid.
        ServeError: A setting is invalid, the port cannot be listened on, the store cannot be
            opened, or the server did not start.
    """
    import uvicorn

    try:
        settings = get_settings()
    except ValidationError as invalid:
        raise ServeError(f"invalid KEEPWISE_* setting: {_settings_problems(invalid)}") from None
    check_port(host, port)
    app = create_app(settings)
    check_store(settings)
    config = logging_config(settings.log_level)
    logging.config.dictConfig(config)
    server = uvicorn.Server(
        server_config(app, settings, host, port, log_config=config, access_log=False)
    )
    try:
        server.run()
    except SystemExit as stopped:  # uvicorn exits when it cannot bind or start
        raise ServeError(f"the server on {host}:{port} could not start (see the log)") from stopped
    if not server.started:
        raise ServeError(f"the server on {host}:{port} could not start (see the log)")
