"""An S3 refusal of the request time is ClockSkewed with the server's own message (issue 21)."""

from __future__ import annotations

import pytest
from minio.error import InvalidResponseError

from edged.s3bucket import (
    ClockSkewed,
    CredentialsRefused,
    UpstreamError,
    _raise_mapped,
    is_clock_refusal,
)

AWS = "The difference between the request time and the current time is too large."


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("RequestTimeTooSkewed", AWS, True),
        ("RequestExpired", "Request has expired", True),
        ("AccessDenied", "Request time too skewed", True),  # MinIO-like wording
        ("BadRequest", "The request time is too far from the server's time", True),
        ("AccessDenied", "Access Denied", False),
        ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist", False),
    ],
)
def test_is_clock_refusal(code: str, message: str, expected: bool) -> None:
    assert is_clock_refusal(code, message) is expected


def test_text_xml_refusal_keeps_the_servers_message() -> None:
    body = f"<Error><Code>RequestTimeTooSkewed</Code><Message>{AWS}</Message></Error>"
    with pytest.raises(ClockSkewed) as caught:
        _raise_mapped(InvalidResponseError(403, "text/xml", body), "put a/b.mp4")
    assert AWS in str(caught.value)
    assert "put a/b.mp4: upstream refused the request time (RequestTimeTooSkewed" in str(
        caught.value
    )


def test_a_codeless_400_that_says_so_is_a_clock_refusal() -> None:
    error = InvalidResponseError(400, "text/plain", "Bad request: request time too far off")
    with pytest.raises(ClockSkewed):
        _raise_mapped(error, "probe")


def test_other_refusals_keep_their_meaning() -> None:
    denied = "<Error><Code>InvalidAccessKeyId</Code><Message>no</Message></Error>"
    with pytest.raises(CredentialsRefused):
        _raise_mapped(InvalidResponseError(403, "text/xml", denied), "probe")
    with pytest.raises(UpstreamError) as caught:
        _raise_mapped(InvalidResponseError(400, "text/html", "<html>nope</html>"), "probe")
    assert not isinstance(caught.value, ClockSkewed)
