"""What a client sends cannot forge or garble a log line (issue 15, defect 3)."""

from __future__ import annotations

import logging
import logging.config
import sys
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from service.api.main import logging_config


@pytest.fixture
def service_formatter() -> logging.Formatter:
    """The formatter ``run()`` configures, built from the same dictConfig."""
    spec = dict(logging_config()["formatters"]["plain"])
    factory = spec.pop("()")
    module, _, name = factory.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    formatter: logging.Formatter = cls(fmt=spec["format"])
    return formatter


@pytest.mark.parametrize(
    ("path", "escaped"),
    [
        ("/v1/customers/q\nFORGED 200/recommendation", "q\\x0aFORGED 200"),
        ("/v1/customers/q\r\nFORGED/recommendation", "q\\x0d\\x0aFORGED"),
        ("/v1/customers/\x1b[2J\x1b[31mred/recommendation", "\\x1b[2J\\x1b[31mred"),
        ("/v1/customers/a\x00b/recommendation", "a\\x00b"),
        ("/v1/customers/a\u2028b/recommendation", "a\\u2028b"),
    ],
)
def test_a_decoded_path_stays_on_one_printable_line(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    service_formatter: logging.Formatter,
    path: str,
    escaped: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="keepwise.access"):
        # no key: the forged line must not even need one
        assert client.get(quote(path, safe="/")).status_code == 401
    (access,) = [r for r in caplog.records if r.name == "keepwise.access"]
    for record in (access,):
        record.request_id = "rid"
        line = service_formatter.format(record)
        assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x00" not in line
        assert escaped in line
        assert line.isprintable()


def test_tracebacks_keep_their_lines_but_no_other_control_characters(
    service_formatter: logging.Formatter,
) -> None:
    try:
        raise ValueError("bad id 'x\x1b[31m'")
    except ValueError:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed on %s", ("a\nb",), sys.exc_info()
        )
    record.request_id = "rid"
    text = service_formatter.format(record)
    first, *rest = text.split("\n")
    assert first.endswith("failed on a\\x0ab")
    assert rest[0] == "Traceback (most recent call last):"
    assert "\x1b" not in text and "x\\x1b[31m" in text
