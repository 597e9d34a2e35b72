"""Who signed up: a cookie signed with a secret only this box holds.

The cookie's value is `<signup id>.<HMAC-SHA256(secret, signup id) in hex>`. The secret is made
once, on first start, in the data dir (mode 0600); the daemon puts it under `MEMBER_SECRET`, and
under `MEMBER_CHECK` the desk's check that a signup id is still in the book (a deleted guest's
cookie opens nothing). Pages and the asset route ask `signed_up(request)`; without the secret (a
test app, the guest desk not running) nobody is signed up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from edged import fileio

COOKIE = "edged_member"
SECRET_FILE = "guest.secret"  # noqa: S105 - a file name, not a secret
SECRET_BYTES = 32
# A guest who signed up at the event still holds the exclusive clips when back a month later.
COOKIE_MAX_AGE = 400 * 24 * 3600
MAX_SIGNUP_ID = 64

MEMBER_SECRET = web.AppKey("member_secret", bytes)
# Whether a signup id is still in the book; it must answer from memory (it runs on the loop).
MEMBER_CHECK: web.AppKey[Callable[[str], bool]] = web.AppKey("member_check")


def load_or_create_secret(data_dir: Path) -> bytes:
    """The cookie secret of this box: read, or made once (0600) on first start (blocking)."""
    return fileio.load_or_create_secret(
        data_dir / SECRET_FILE,
        what="guest cookie secret",
        consequence="guests then sign up again for the exclusive clips",
        size=SECRET_BYTES,
    )


def _mac(secret: bytes, signup_id: str) -> str:
    return hmac.new(secret, signup_id.encode("ascii"), hashlib.sha256).hexdigest()


def sign(secret: bytes, signup_id: str) -> str:
    """The cookie value for a signup id (letters, digits, `-` and `_` only)."""
    if not signup_id or len(signup_id) > MAX_SIGNUP_ID or not signup_id.isascii():
        raise ValueError("a signup id is 1-64 ASCII characters")
    return f"{signup_id}.{_mac(secret, signup_id)}"


def verified_id(secret: bytes, value: str) -> str | None:
    """The signup id a cookie value carries, or None when it is not one this box signed."""
    signup_id, _, mac = value.rpartition(".")
    if not signup_id or len(signup_id) > MAX_SIGNUP_ID or not signup_id.isascii():
        return None
    if not mac.isascii() or not hmac.compare_digest(mac, _mac(secret, signup_id)):
        return None
    return signup_id


def signed_up(request: web.BaseRequest) -> bool:
    """True when the request carries a member cookie this box signed, for a signup still in the
    book (when the app holds a MEMBER_CHECK: the daemon's always does)."""
    if not isinstance(request, web.Request):
        return False
    secret, value = request.app.get(MEMBER_SECRET), request.cookies.get(COOKIE)
    signup_id = None if secret is None or value is None else verified_id(secret, value)
    if signup_id is None:
        return False
    still_in_book = request.app.get(MEMBER_CHECK)
    return still_in_book is None or still_in_book(signup_id)


def give_cookie(response: web.StreamResponse, secret: bytes, signup_id: str) -> None:
    """Set the member cookie: HttpOnly, SameSite=Lax, Path=/."""
    response.set_cookie(
        COOKIE,
        sign(secret, signup_id),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
    )
