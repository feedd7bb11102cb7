r"""Request ids (``X-Request-ID`` in and out, on every log line) and the request body size limit.

Both middlewares are pure ASGI (no ``BaseHTTPMiddleware``): they wrap ``receive``/``send`` and
never buffer a body.

Request id. A client's ``X-Request-ID`` is kept when it is 1-128 characters of
``[A-Za-z0-9._:-]``; otherwise a new one (32 random hex digits) is made. It is answered in the
``X-Request-ID`` response header, held in a context variable for the request (threads started
with ``run_in_threadpool`` inherit it) and put on every log record by :class:`RequestIdFilter`.
One access line per request is logged with method, path, status and duration. An unhandled
exception is logged with the request id and answered as a JSON 500 carrying the id.

Log lines. What a client sends reaches the log (the decoded path, ids in messages), so
:class:`SafeFormatter` writes control characters as ``\xNN`` escapes: a ``%0a`` in a path
cannot forge a second log line, ``%1b`` cannot send terminal escapes, ``%00`` no NUL byte.

Body limit. :class:`BodySizeLimitMiddleware` answers 413 before reading anything when
``Content-Length`` exceeds the limit, and otherwise counts the bytes as the application reads
them, failing with 413 as soon as the count passes the limit (chunked uploads without a length).
"""

from __future__ import annotations

import logging
import random
import re
import time
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.schemas import MAX_BATCH

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id_var: ContextVar[str] = ContextVar("keepwise_request_id", default="-")
access_logger = logging.getLogger("keepwise.access")
logger = logging.getLogger(__name__)


def request_id() -> str:
    """The current request's id (``-`` outside a request)."""
    return request_id_var.get()


# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_ESCAPES = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _UNSAFE}
_ESCAPES_KEEPING_NEWLINES = {k: v for k, v in _ESCAPES.items() if k != ord("\n")}


def escape_for_log(text: str) -> str:
    """``text`` with every control character written as an escape (one line, printable)."""
    return text.translate(_ESCAPES)


class SafeFormatter(logging.Formatter):
    """A formatter whose lines cannot be forged or garbled by what clients send.

    The line (message and fields) is escaped completely; an exception's traceback keeps its
    line breaks but loses every other control character.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The record's line, escaped."""
        return escape_for_log(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        """The traceback, with line breaks but no other control characters."""
        return super().formatException(ei).translate(_ESCAPES_KEEPING_NEWLINES)

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's name
        """The stack, with line breaks but no other control characters."""
        return super().formatStack(stack_info).translate(_ESCAPES_KEEPING_NEWLINES)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (attach it to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.request_id``; never drops a record."""
        record.request_id = request_id_var.get()
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), as Starlette's ``Headers`` reads
    it (latin-1), without building a ``Headers`` object on every request."""
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers send header names in lower case
            return str(value.decode("latin-1"))
    return None


def _new_request_id() -> str:
    """32 random hex digits, the form of ``uuid4().hex`` (ids name requests; not secrets)."""
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    """Reads or makes the request id, answers it in ``X-Request-ID`` and logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given is not None and _VALID_ID.match(given) else _new_request_id()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status, started_response = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug: log it while the request id is still set and answer a JSON 500 with the id.
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started_response:
                raise
            await JSONResponse(
                {"detail": "internal error; quote the X-Request-ID header when reporting it"},
                status_code=500,
            )(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id_var.reset(token)


def too_large_detail(limit: int) -> str:
    """The 413 message for a body limit of ``limit`` bytes."""
    return (
        f"request body larger than {limit:,} bytes; send at most {MAX_BATCH:,} customers per "
        "request (use the batch command for more)"
    )


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 without reading them whole.

    Args:
        app: The application.
        max_bytes: Largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status, detail = (
                (413, too_large_detail(self.max_bytes))
                if length.isdigit()
                else (400, "invalid Content-Length header")
            )
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # handled by the app's HTTPException handler (JSON 413)
                    raise HTTPException(413, detail=too_large_detail(self.max_bytes))
            return message

        await self.app(scope, receive_limited, send)
