"""The member cookie: signed by the box's secret, refused when forged or altered."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from edged.errors import StartupError
from edged.guest.members import (
    COOKIE,
    MEMBER_SECRET,
    SECRET_FILE,
    give_cookie,
    load_or_create_secret,
    sign,
    signed_up,
    verified_id,
)


def test_the_secret_is_made_once_0600_and_read_back(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == first
    assert len(first) == 32


def test_a_damaged_secret_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("not hex")
    with pytest.raises(StartupError, match="delete it"):
        load_or_create_secret(tmp_path)


def test_a_signed_id_verifies_and_any_change_does_not() -> None:
    secret = b"k" * 32
    value = sign(secret, "abc123")
    assert verified_id(secret, value) == "abc123"
    assert verified_id(b"x" * 32, value) is None
    assert verified_id(secret, "abc124" + value[6:]) is None
    assert verified_id(secret, value[:-1] + ("0" if value[-1] != "0" else "1")) is None
    assert verified_id(secret, "") is None
    assert verified_id(secret, "abc123") is None
    assert verified_id(secret, "é." + value) is None


def _request(cookie: str | None, secret: bytes | None) -> web.Request:
    app = web.Application()
    if secret is not None:
        app[MEMBER_SECRET] = secret
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    return make_mocked_request("GET", "/", headers=headers, app=app)


def test_signed_up_only_with_a_cookie_this_box_signed() -> None:
    secret = b"s" * 32
    assert signed_up(_request(sign(secret, "id1"), secret))
    assert not signed_up(_request(None, secret))
    assert not signed_up(_request(sign(b"t" * 32, "id1"), secret))
    assert not signed_up(_request(sign(secret, "id1"), None))


def test_the_cookie_is_http_only_lax_and_site_wide() -> None:
    response = web.Response()
    give_cookie(response, b"s" * 32, "id1")
    morsel = response.cookies[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
