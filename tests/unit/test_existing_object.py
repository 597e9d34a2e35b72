"""An object already at the key: sent over only when it claims these bytes and is not them."""

from __future__ import annotations

import pytest

from edged.s3bucket import ObjectFacts
from edged.upload.verify import existing_object

SHA = "ab" * 32
ETAGS = {"0123", "4567-3"}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (None, "send"),
        (ObjectFacts(etag="0123", size=10, sha256=SHA), "done"),
        (ObjectFacts(etag="4567-3", size=10, sha256=SHA), "done"),
        (ObjectFacts(etag="0123", size=10, sha256=""), "done"),  # metadata lost by the server
        (ObjectFacts(etag="0123", size=10, sha256="cd" * 32), "refuse"),  # same bytes, other claim
        (ObjectFacts(etag="ffff", size=10, sha256="cd" * 32), "refuse"),
        (ObjectFacts(etag="ffff", size=10, sha256=""), "refuse"),  # someone else's object
        (ObjectFacts(etag="0123", size=11, sha256=""), "refuse"),
        (ObjectFacts(etag="ffff", size=10, sha256=SHA), "send"),  # claims these bytes, is not
        (ObjectFacts(etag="0123", size=9, sha256=SHA), "send"),
    ],
)
def test_existing_object(facts: ObjectFacts | None, expected: str) -> None:
    assert existing_object(facts, 10, SHA, ETAGS) == expected
