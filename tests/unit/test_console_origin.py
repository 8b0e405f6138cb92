"""The console's same-origin rule for forms: Origin, else Referer, must name the console."""

from __future__ import annotations

import pytest

from gateway.console import origin_of, same_origin

HERE = ("http://127.0.0.1:3000", "https://billing.example.com")


@pytest.mark.parametrize(
    ("url", "origin"),
    [("http://127.0.0.1:3000/console/x?y=1", "http://127.0.0.1:3000"),
     ("HTTPS://Billing.Example.com:443/a", "https://billing.example.com"),
     ("http://h.example:80", "http://h.example"), ("http://[::1]:3000/", "http://[::1]:3000"),
     ("null", None), ("/console", None), ("ftp://h.example/", None),
     ("http://h.example:99999/", None), ("", None)],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("origin", "referer", "accepted"),
    [("http://127.0.0.1:3000", None, True),
     (None, "http://127.0.0.1:3000/console/tenants/t1", True),
     ("https://billing.example.com", None, True),
     (None, None, False),                                   # neither header: refused
     ("", "", False),
     ("null", "http://127.0.0.1:3000/console", False),      # an opaque origin wins
     ("https://127.0.0.1:3000", None, False),               # the scheme counts
     ("http://127.0.0.1:3001", None, False),                # so does the port
     ("http://evil.example", "http://127.0.0.1:3000/console", False),
     (None, "http://evil.example/?http://127.0.0.1:3000", False),
     ("http://127.0.0.1:3000.evil.example", None, False)],
)
def test_same_origin(origin: str | None, referer: str | None, accepted: bool) -> None:
    assert same_origin(origin, referer, HERE) is accepted
