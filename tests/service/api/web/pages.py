"""Helpers for the web page tests: sign in through the form, read tokens and table rows."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CUSTOMER_LINK = re.compile(r'href="/web/customers/([^"#?]+)"')


def csrf(html: str) -> str:
    """The first CSRF token in a page."""
    found = CSRF.search(html)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    """Sign in with an API key through the form, as a browser does (follows the redirect)."""
    form = client.get("/web/sign-in")
    assert form.status_code == 200
    return client.post(
        "/web/sign-in",
        data={"csrf_token": csrf(form.text), "api_key": token, "next": "/web/"},
    )


def customers_listed(html: str) -> list[str]:
    """Customer ids linked from a page, in order, without repeats."""
    return list(dict.fromkeys(CUSTOMER_LINK.findall(html)))
