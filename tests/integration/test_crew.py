"""/crew on a real daemon: the login form's token (wrong: 403 and one log line without it;
right: a session cookie), the cookie opening /crew/state (the disk judged by the configured
floor) and nothing else's cookie doing so, cross-origin POSTs refused, logout, the login limit
per client."""

from __future__ import annotations

import http.client
import json
import re
import secrets
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest

from edged.web.crew_page import PAGE_BUDGET
from tests.support import DaemonProcess, shared_daemon, still_running

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    # a disk floor no disk reaches: the screen judges the disk by the configured one
    settings: dict[str, dict[str, object]] = {
        "storage": {"min_free_bytes": 2**60},
        "mdns": {"enabled": False},
    }
    with shared_daemon(tmp_path_factory.mktemp("crew"), settings, "test-pattern") as daemon:
        yield daemon


@pytest.fixture
def daemon(box: DaemonProcess) -> Iterator[DaemonProcess]:
    yield from still_running(box)


def token(daemon: DaemonProcess) -> str:
    assert daemon.data_dir is not None
    return (daemon.data_dir / "admin.token").read_text().strip()


def request(
    daemon: DaemonProcess,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, str]:
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        sent = {**(FORM if body is not None else {}), **(headers or {})}
        connection.request(method, path, urlencode(body) if body is not None else None, sent)
        response = connection.getresponse()
        return response.status, response.msg, response.read().decode()
    finally:
        connection.close()


def log_in(daemon: DaemonProcess, presented: str, **headers: str) -> tuple[int, str, str]:
    """(status, the crew cookie's value or "", the Set-Cookie header)."""
    status, message, _ = request(daemon, "POST", "/crew/login", {"token": presented}, headers)
    header = message.get("Set-Cookie", "")
    cookie = SimpleCookie(header)
    return status, cookie["edged_crew"].value if "edged_crew" in cookie else "", header


def state(daemon: DaemonProcess, cookie: str) -> tuple[int, dict[str, Any]]:
    status, _, body = request(daemon, "GET", "/crew/state", headers={"Cookie": cookie})
    return status, json.loads(body)


def test_a_wrong_token_is_refused_with_one_log_line_without_it(daemon: DaemonProcess) -> None:
    wrong = "not-the-token-" + secrets.token_hex(8)
    status, message, body = request(daemon, "POST", "/crew/login", {"token": wrong})
    assert status == 403 and "Wrong admin token." in body
    assert "Set-Cookie" not in message
    line = daemon.seen_or_wait(re.compile(r"crew login refused from \S+: wrong token")).string
    assert wrong not in line and token(daemon) not in line
    assert not any(wrong in seen for seen in daemon.lines)


def test_the_right_token_gives_a_strict_httponly_cookie_that_opens_the_state(
    daemon: DaemonProcess,
) -> None:
    status, _, body = request(daemon, "GET", "/crew")
    assert status == 200 and "name=token type=password" in body  # the login form
    status, value, header = log_in(daemon, token(daemon) + "\n")
    assert status == 303 and value
    assert {"HttpOnly", "SameSite=Strict", "Path=/crew"} <= {p.strip() for p in header.split(";")}
    status, shown = state(daemon, f"edged_crew={value}")
    assert status == 200
    assert [c["stream"] for c in shown["cameras"]] == ["test-pattern"]
    titles = [w["title"] for w in shown["warnings"]]
    assert "Footage is not being uploaded" in titles  # no upstream configured here
    assert "Disk space is low" in titles
    disk = next(line for line in shown["lines"] if line["label"] == "Disk")
    assert disk["status"] == "FAIL", disk
    status, message, page = request(
        daemon, "GET", "/crew", headers={"Cookie": f"edged_crew={value}"}
    )
    assert status == 200 and "id=cams" in page and len(page.encode()) <= PAGE_BUDGET
    assert "default-src 'none'" in message["Content-Security-Policy"]
    assert message["Cache-Control"] == "no-store"
    assert daemon.data_dir is not None
    assert (daemon.data_dir / "crew.secret").stat().st_mode & 0o777 == 0o600


def test_no_cookie_a_forged_one_or_a_guests_opens_nothing(daemon: DaemonProcess) -> None:
    assert state(daemon, "")[0] == 401
    assert state(daemon, "edged_crew=9999999999.abc." + "0" * 64)[0] == 401
    # a guest's own cookie, from signing up at /join, under either name
    fields = {"key": secrets.token_urlsafe(16), "email": "ada@example.org", "consent": "yes"}
    status, message, _ = request(daemon, "POST", "/join", fields)
    assert status == 200
    guest = SimpleCookie(message["Set-Cookie"])["edged_member"].value
    assert state(daemon, f"edged_member={guest}")[0] == 401
    assert state(daemon, f"edged_crew={guest}")[0] == 401
    # the state is no API read the token middleware lets through: /crew/state asks by itself
    status, _, body = request(
        daemon, "GET", "/crew/state", headers={"Authorization": f"Bearer {token(daemon)}"}
    )
    shown = json.loads(body)
    assert shown["node"] == "box"
    assert {"label": "Sign-ups", "value": "1", "status": "OK"} in shown["lines"]


def test_cross_origin_posts_are_refused(daemon: DaemonProcess) -> None:
    right = token(daemon)
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        status, value, _ = log_in(daemon, right, **headers)
        assert (status, value) == (403, "")
        status, message, body = request(daemon, "POST", "/crew/logout", {}, headers)
        assert status == 403 and "Set-Cookie" not in message, body


def test_logout_drops_the_cookie(daemon: DaemonProcess) -> None:
    _, value, _ = log_in(daemon, token(daemon))
    cookie = f"edged_crew={value}"
    status, message, _ = request(daemon, "POST", "/crew/logout", {}, {"Cookie": cookie})
    assert status == 303 and message["Location"] == "/crew"
    dropped = SimpleCookie(message["Set-Cookie"])["edged_crew"]
    assert dropped.value == "" and dropped["max-age"] == "0" and dropped["path"] == "/crew"


def test_login_tries_are_limited_per_client(daemon: DaemonProcess) -> None:
    """Five tries at once, then one per ten seconds (the tests above used some)."""
    statuses = [log_in(daemon, "guess")[0] for _ in range(6)]
    assert statuses[-1] == 429 and set(statuses) <= {403, 429}, statuses
    # the right token waits too
    assert log_in(daemon, token(daemon))[0] == 429
