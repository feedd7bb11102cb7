"""Connection limits uvicorn does not set: request-head size, head and body deadlines.

uvicorn's httptools protocol reads a request head of any size (an 8 MiB ``Authorization``
header is buffered whole) and puts no deadline on a connection before its first request or
while a request trickles in: 3,000 connections that open and send nothing, or half a head, are
held for as long as their clients like. :func:`guarded_protocol` makes a subclass of that
protocol (the same parser and request cycle, so the latency is unchanged) that

- answers ``431`` and closes when a request head (request line and header fields) exceeds
  ``max_header_bytes``, counting the bytes as they arrive, before the parser buffers them;
- answers ``408`` and closes when a request head has not arrived in full ``header_timeout_s``
  after the connection opened or the head began (a connection that sends nothing is closed);
- answers ``408`` and closes when a request body has not arrived in full ``body_timeout_s``
  after its head.

Idle keep-alive connections are closed by uvicorn after ``timeout_keep_alive`` (set from
``keep_alive_s`` by :func:`server_config`). The limits are the settings
``KEEPWISE_MAX_HEADER_BYTES``, ``KEEPWISE_HEADER_TIMEOUT_S``, ``KEEPWISE_BODY_TIMEOUT_S`` and
``KEEPWISE_KEEP_ALIVE_S``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits one protocol class enforces (see the module docstring)."""

    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The limits the settings name."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
        )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head size limit and the two deadlines.

    Use :func:`guarded_protocol` to get a subclass bound to its limits.
    """

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # reading a request head (or waiting for one)
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, "the request head")

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes before the parser buffers them; refuse a head that is too large."""
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._deadline is None:  # a new request on a kept-alive connection
                self._arm(self.limits.header_timeout_s, "the request head")
        super().data_received(data)
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request header fields too large")

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        """Check the head's exact size, then start the clock for the body."""
        if self._refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse(431, "request header fields too large")
            return
        self._in_head = False
        self._head_bytes = 0
        self._arm(self.limits.body_timeout_s, "the request body")
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Pass the body on unless the request was refused."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is in: stop the clock; the next head starts with its first byte."""
        if self._refused:
            return
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    # -- deadlines -----------------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes == 0 and self.cycle is None:
            self.transport.close()  # opened and never used: nobody to answer
            return
        logger.info("closing a connection: %s did not arrive within %.0f s", what, seconds)
        self._refuse(408, f"{what} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless a response already started) and close the connection."""
        self._refused = True
        self._disarm()
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            body = message.encode("ascii")
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        if cycle is not None and not cycle.response_complete:
            # the application, if it waits for the body, sees the client leave
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A :class:`GuardedHttpToolsProtocol` subclass enforcing ``limits``."""
    return type("KeepwiseHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def server_config(app: Any, settings: Settings, host: str, port: int, **options: Any) -> Any:
    """The uvicorn configuration ``run()`` serves with: uvloop, the guarded httptools protocol,
    one worker, the keep-alive timeout from the settings.

    Args:
        app: The ASGI application.
        settings: Where the limits come from.
        host: Interface to bind.
        port: TCP port.
        **options: Further :class:`uvicorn.Config` options (logging).

    Returns:
        A :class:`uvicorn.Config`.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(ConnectionLimits.from_settings(settings)),
        workers=1,
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]  # uvicorn takes float
        proxy_headers=False,
        **options,
    )
