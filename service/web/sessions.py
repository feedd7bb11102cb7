"""Signed-in sessions: server-side, in memory, with idle and absolute expiry and a CSRF token.

Sign-in exchanges an API key for a session: a random 256-bit id in an HttpOnly, SameSite=Strict
cookie. The server keeps only the key's entry from the key ring (name, role, scope, authority and
hash), the CSRF token and two timestamps; the key itself is never stored or sent back. A
session ends after ``idle`` without a request, after ``absolute`` in all, on sign-out, or when
the process restarts (one worker serves the API, so memory is the session store; a restart
signs everyone out, which is the safe failure).

CSRF: every form carries the session's token (synchronizer-token pattern); a POST whose token
does not match in constant time is refused. The sign-in form, before any session exists,
uses a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from service.api.keys import ApiKeyEntry

SESSION_COOKIE = "keepwise_session"
SIGN_IN_COOKIE = "keepwise_sign_in"


@dataclass(frozen=True)
class Session:
    """One signed-in browser.

    Attributes:
        session_id: The cookie value (256 random bits).
        key: The key ring's entry for the API key signed in with.
        csrf_token: Token every form of this session must send back.
        created_at: Sign-in time (UTC).
        last_seen: Time of the last request (UTC).
    """

    session_id: str
    key: ApiKeyEntry
    csrf_token: str
    created_at: datetime
    last_seen: datetime


class SessionStore:
    """Sessions by id, expiring after ``idle`` without use or ``absolute`` after sign-in."""

    def __init__(self, idle: timedelta, absolute: timedelta) -> None:
        self.idle = idle
        self.absolute = absolute
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, key: ApiKeyEntry, now: datetime) -> Session:
        """A new session for the key (old expired sessions are swept)."""
        session = Session(
            session_id=secrets.token_urlsafe(32),
            key=key,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
        )
        with self._lock:
            self._sweep(now)
            self._sessions[session.session_id] = session
        return session

    def touch(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session with this id, its idle clock restarted; None if unknown or expired."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session = replace(session, last_seen=now)
            self._sessions[session_id] = session
            return session

    def close(self, session_id: str | None) -> None:
        """End a session (sign-out)."""
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def _expired(self, session: Session, now: datetime) -> bool:
        return now - session.last_seen > self.idle or now - session.created_at > self.absolute

    def _sweep(self, now: datetime) -> None:
        for session_id in [s for s, v in self._sessions.items() if self._expired(v, now)]:
            del self._sessions[session_id]


def new_token() -> str:
    """A random token for the sign-in form's double-submit cookie."""
    return secrets.token_urlsafe(32)


def tokens_match(sent: str | None, expected: str | None) -> bool:
    """Whether a form's token equals the expected one (constant time; missing never matches)."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))
