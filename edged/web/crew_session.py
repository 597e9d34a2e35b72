"""The crew's session on `/crew`: a cookie signed with a secret of its own.

The value is `<expires>.<nonce>.<HMAC-SHA256(key, "crew" NUL expires "." nonce) in hex>`, the key
being the secret bound to the admin token (`session_key`: a new token ends every session). The
secret is not the guests' (edged/guest/members.py): another file in the data dir (mode 0600),
and the MAC carries the purpose, so no guest cookie ever opens the crew screen. Signing and
checking take the time as an argument; only `load_or_create_secret` touches the disk.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from edged import fileio

COOKIE = "edged_crew"
SECRET_FILE = "crew.secret"  # noqa: S105 - a file name, not a secret
SECRET_BYTES = 32
PURPOSE = b"crew\x00"
# A shift: the crew logs in again the next day.
SESSION_SECONDS = 12 * 3600
_MAX_VALUE = 200


def session_key(secret: bytes, token: str) -> bytes:
    """The key sessions are signed with: the crew secret bound to the admin token, so a new
    token (a lost phone, a crew member gone) ends every session signed under the old one."""
    material = PURPOSE + token.encode("utf-8", "surrogateescape")
    return hmac.new(secret, material, hashlib.sha256).digest()


def _mac(secret: bytes, payload: str) -> str:
    return hmac.new(secret, PURPOSE + payload.encode("ascii"), hashlib.sha256).hexdigest()


def sign(secret: bytes, now: float, nonce: str | None = None) -> str:
    """A fresh session cookie's value, valid for SESSION_SECONDS from `now`."""
    payload = f"{int(now) + SESSION_SECONDS}.{nonce or secrets.token_urlsafe(12)}"
    return f"{payload}.{_mac(secret, payload)}"


def valid(secret: bytes, value: str | None, now: float) -> bool:
    """Whether `value` is a session cookie this box signed for the crew and not yet expired."""
    if not value or len(value) > _MAX_VALUE or not value.isascii():
        return False
    payload, _, mac = value.rpartition(".")
    expires, _, nonce = payload.partition(".")
    if not expires.isdigit() or not nonce or not hmac.compare_digest(mac, _mac(secret, payload)):
        return False
    return now < int(expires)


def token_matches(presented: str, token: str) -> bool:
    """The admin token, compared in constant time (bytes: any text a form may carry)."""
    raw = presented.strip().encode("utf-8", "surrogateescape")
    return bool(raw) and hmac.compare_digest(raw, token.encode("utf-8", "surrogateescape"))


def load_or_create_secret(data_dir: Path) -> bytes:
    """This box's crew cookie secret: read, or made once (0600) on first start (blocking)."""
    return fileio.load_or_create_secret(
        data_dir / SECRET_FILE,
        what="crew cookie secret",
        consequence="the crew then logs in again",
        size=SECRET_BYTES,
    )
