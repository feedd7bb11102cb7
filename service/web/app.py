"""Wiring of the web page: templates, static files, sessions, sign-in and the page errors.

:func:`install` adds everything to the API's app (called by
:func:`service.api.main.create_app`). Pages live in :mod:`service.web.pages` and
:mod:`service.web.approvals`; they take the signed-in user with the :data:`UserDep`
dependency, which redirects to the sign-in form when there is no live session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from service.api.keys import ApiKeyEntry, KeyRing, Role
from service.settings import Settings
from service.storage import StoreError
from service.storage.records import StoreConflict
from service.web.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Session,
    SessionStore,
    new_token,
    tokens_match,
)

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PREFIX = "/web"
MAX_FORM_FIELDS = 40
T = TypeVar("T")


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in form (and back afterwards)."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageError(Exception):
    """An error shown as a page: status code and a sentence for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class WebUser:
    """The signed-in user: the API key's entry and the session."""

    key: ApiKeyEntry
    session: Session

    @property
    def can_record(self) -> bool:
        """Whether the key may record decisions (role agent or above)."""
        return self.key.role.includes(Role.agent)


def now() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)


def templates(request: Request) -> Jinja2Templates:
    """The page templates (made at install)."""
    found: Jinja2Templates = request.app.state.web_templates
    return found


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A rendered page, with the headers every page carries."""
    response = templates(request).TemplateResponse(request, name, context, status_code=status_code)
    _secure_headers(response)
    return response


def _secure_headers(response: Response) -> None:
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


async def current_user(request: Request) -> WebUser:
    """The signed-in user; redirects to sign-in when the session is missing or expired."""
    sessions: SessionStore = request.app.state.web_sessions
    session = sessions.touch(request.cookies.get(SESSION_COOKIE), now())
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else f"{PREFIX}/")
    return WebUser(session.key, session)


UserDep = Annotated[WebUser, Depends(current_user)]


async def form_data(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (the last value of a repeated field wins).

    Raises:
        PageError: 415 for another content type, 400 for a body that is not UTF-8.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "forms must be sent as application/x-www-form-urlencoded")
    try:
        text = (await request.body()).decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "the form could not be read") from None


def check_csrf(user: WebUser, form: dict[str, str]) -> None:
    """Refuse a form without this session's CSRF token.

    Raises:
        PageError: 403.
    """
    if not tokens_match(form.get("csrf_token"), user.session.csrf_token):
        raise PageError(403, "the form has expired or did not come from this site; reload the page")


async def call_store(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking store call in the thread pool, its errors turned into page errors."""
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except StoreConflict as conflict:
        raise PageError(409, str(conflict)) from None
    except StoreError as error:
        if error.field is not None:
            raise PageError(422, str(error)) from None
        logger.error("store unavailable: %s", error)
        raise PageError(503, "the store is unavailable; nothing was written, retry later") from None


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path inside the web page, never another site."""
    if (
        value
        and value.startswith(f"{PREFIX}/")
        and not value.startswith("//")
        and "\\" not in value
    ):
        return value
    return f"{PREFIX}/"


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    """The sign-in form (double-submit CSRF cookie set here)."""
    token = new_token()
    response = render(
        request, "sign_in.html", {"csrf_token": token, "next": safe_next(next), "error": None}
    )
    _sign_in_cookie(response, token)
    return response


def _sign_in_cookie(response: Response, token: str) -> None:
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=900, httponly=True, samesite="strict", path=PREFIX
    )


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Exchange an API key for a session."""
    form = await form_data(request)
    target = safe_next(form.get("next"))
    if not tokens_match(form.get("csrf_token"), request.cookies.get(SIGN_IN_COOKIE)):
        raise PageError(403, "the sign-in form has expired; reload it and try again")
    keyring: KeyRing = request.app.state.keyring
    entry = keyring.authenticate(form.get("api_key", "").strip())
    if entry is None:
        token = new_token()
        response = render(
            request,
            "sign_in.html",
            {"csrf_token": token, "next": target, "error": "That API key is not valid."},
            status_code=401,
        )
        _sign_in_cookie(response, token)
        return response
    sessions: SessionStore = request.app.state.web_sessions
    session = sessions.open(entry, now())
    logger.info("web sign-in by key %s (%s)", entry.name, entry.role)
    redirect = RedirectResponse(target, status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        max_age=int(sessions.absolute.total_seconds()),
        httponly=True,
        samesite="strict",
        path="/",
    )
    redirect.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return redirect


@router.post("/sign-out")
async def sign_out(request: Request, user: UserDep) -> Response:
    """End the session."""
    check_csrf(user, await form_data(request))
    request.app.state.web_sessions.close(user.session.session_id)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(exc.next_url, safe='')}", 303)


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return render(request, "error.html", {"status": exc.status, "message": exc.message}, exc.status)


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the web page from ``app``: routes under ``/web``, static files, sessions."""
    from service.web import approvals, pages  # the page routes register on import

    app.state.web_sessions = SessionStore(
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_hours),
    )
    environment = Jinja2Templates(directory=HERE / "templates")
    environment.env.filters.update(pages.FILTERS)
    app.state.web_templates = environment
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(approvals.router)
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_exception_handler(PageError, _error_page)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)
