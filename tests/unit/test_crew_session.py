"""The crew's session cookie: signed with its own secret and purpose, expiring, never a guest's;
the admin token compared as bytes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.errors import StartupError
from edged.guest import members
from edged.web import crew_session
from edged.web.crew_session import (
    SESSION_SECONDS,
    load_or_create_secret,
    sign,
    token_matches,
    valid,
)

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def test_a_signed_session_is_valid_until_it_expires() -> None:
    value = sign(SECRET, NOW)
    assert valid(SECRET, value, NOW)
    assert valid(SECRET, value, NOW + SESSION_SECONDS - 1)
    assert not valid(SECRET, value, NOW + SESSION_SECONDS)


def test_each_session_is_a_new_value() -> None:
    assert sign(SECRET, NOW) != sign(SECRET, NOW)


def test_another_secret_or_a_changed_part_opens_nothing() -> None:
    value = sign(SECRET, NOW, nonce="abc")
    expires, nonce, mac = value.split(".")
    assert not valid(b"t" * 32, value, NOW)
    assert not valid(SECRET, f"{int(expires) + 3600}.{nonce}.{mac}", NOW)  # a longer life
    assert not valid(SECRET, f"{expires}.abd.{mac}", NOW)
    assert not valid(SECRET, f"{expires}.{nonce}.{mac[:-1]}0", NOW)
    assert not valid(SECRET, None, NOW)
    assert not valid(SECRET, "", NOW)


def test_a_guest_cookie_is_no_crew_session_even_with_the_same_secret() -> None:
    """The MAC carries the purpose: a member cookie of a signup id shaped like a session (an
    expiry and a nonce) signed with the very same secret still opens nothing."""
    guest = members.sign(SECRET, f"{int(NOW) + 60}.abc")
    assert members.verified_id(SECRET, guest) is not None
    assert not valid(SECRET, guest, NOW)


@given(st.text(max_size=300))
def test_any_text_is_refused_without_an_error(value: str) -> None:
    assert not valid(SECRET, value, NOW)


def test_the_token_is_compared_whole() -> None:
    assert token_matches("abc123", "abc123")
    assert token_matches(" abc123\n", "abc123")  # pasted with a newline
    assert not token_matches("abc12", "abc123")
    assert not token_matches("", "abc123")
    assert not token_matches("abc123\udcff", "abc123")  # bytes a form may carry: no error
    assert not token_matches("ábc123", "abc123")


def test_the_secret_is_made_once_0600_apart_from_the_guests(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert load_or_create_secret(tmp_path) == first
    path = tmp_path / crew_session.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crew_session.SECRET_FILE != members.SECRET_FILE
    assert members.load_or_create_secret(tmp_path) != first


def test_an_unreadable_secret_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / crew_session.SECRET_FILE).write_text("not hex\n")
    with pytest.raises(StartupError, match="delete it"):
        load_or_create_secret(tmp_path)


def test_a_new_admin_token_ends_every_session() -> None:
    """Review of #19, finding 12: sessions are signed under the secret bound to the token."""
    old = crew_session.session_key(SECRET, "old-token")
    value = sign(old, NOW)
    assert valid(crew_session.session_key(SECRET, "old-token"), value, NOW)
    assert not valid(crew_session.session_key(SECRET, "new-token"), value, NOW)
    assert not valid(SECRET, value, NOW)  # the bare secret signs nothing a session accepts
