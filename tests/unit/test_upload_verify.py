"""What an S3 refusal means whatever its Content-Type; which ETags and sha256 metadata prove an
object holds the bytes sent."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from minio.error import InvalidResponseError

from edged.s3bucket import (
    CredentialsRefused,
    ObjectFacts,
    UploadLost,
    UpstreamError,
    UpstreamUnreachable,
    _raise_mapped,
    error_code,
)
from edged.upload.policy import multipart_etag, plan_parts
from edged.upload.source import etags_of_file
from edged.upload.verify import etags_of_bytes, sha256_metadata_problem, verification_problems

SHA = "ab" * 32


def text_xml(status: int, code: str, message: str = "") -> InvalidResponseError:
    """What minio-py raises for an S3 error body served as text/xml (rclone's serve s3)."""
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>{code}</Code>\n'
    if message:
        body += f"  <Message>{message}</Message>\n"
    return InvalidResponseError(status, "text/xml; charset=utf-8", body + "</Error>")


def test_the_code_of_an_xml_body_served_as_text_xml() -> None:
    assert error_code(text_xml(404, "NoSuchUpload", "NoSuchUpload")) == (
        "NoSuchUpload",
        "NoSuchUpload",
    )
    assert error_code(text_xml(404, "NoSuchKey")) == ("NoSuchKey", "")


@pytest.mark.parametrize(
    "body", [None, "", "<html><body>502 Bad Gateway</body></html>", "<Code>not a code!</Code>"]
)
def test_no_code_when_the_body_has_none(body: str | None) -> None:
    assert error_code(InvalidResponseError(502, "text/html", body)) is None


@pytest.mark.parametrize(
    ("error", "mapped"),
    [
        (text_xml(404, "NoSuchUpload"), UploadLost),
        (text_xml(403, "InvalidAccessKeyId", "not in our records"), CredentialsRefused),
        (text_xml(403, "AccessDenied"), CredentialsRefused),
        (text_xml(500, "InternalError", "try again"), UpstreamError),
        (InvalidResponseError(502, "text/html", "<html>bad gateway</html>"), UpstreamError),
        (ConnectionRefusedError(111, "Connection refused"), UpstreamUnreachable),
    ],
)
def test_text_xml_refusals_map_like_s3_errors(error: Exception, mapped: type[Exception]) -> None:
    with pytest.raises(UpstreamError) as raised:
        _raise_mapped(error, "upload part 2 of e/n/s/d/a.mp4")
    assert type(raised.value) is mapped
    assert raised.value.__cause__ is error


def test_an_answer_without_a_code_is_one_line() -> None:
    page = "<html>\n<body>\n502 Bad Gateway\n</body>\n</html>"
    with pytest.raises(UpstreamError) as raised:
        _raise_mapped(InvalidResponseError(502, "text/html", page), "put e/n/s/d/a.mp4")
    assert str(raised.value) == (
        "put e/n/s/d/a.mp4: upstream answered HTTP 502 (text/html) without an S3 error code"
    )


def test_a_text_xml_refusal_names_its_code() -> None:
    with pytest.raises(UpstreamError, match="upstream said InternalError: try again"):
        _raise_mapped(text_xml(500, "InternalError", "try again"), "complete e/n/s/d/a.mp4")


@pytest.mark.parametrize("etag_of_bytes_sent", [True, False])
def test_matching_sha256_metadata_verifies(etag_of_bytes_sent: bool) -> None:
    # The ETag is judged on its own; the metadata does not refute the upload.
    assert sha256_metadata_problem(SHA, SHA, etag_of_bytes_sent) is None


@pytest.mark.parametrize("etag_of_bytes_sent", [True, False])
def test_different_sha256_metadata_never_verifies(etag_of_bytes_sent: bool) -> None:
    problem = sha256_metadata_problem("cd" * 32, SHA, etag_of_bytes_sent)
    assert problem == f"sha256 metadata {'cd' * 32!r} != {SHA}"


def test_missing_sha256_metadata_verifies_by_the_etag_of_the_bytes_sent() -> None:
    assert sha256_metadata_problem("", SHA, etag_of_bytes_sent=True) is None
    assert sha256_metadata_problem("", SHA, etag_of_bytes_sent=False) == (
        "sha256 metadata missing and the ETag is not of the bytes sent"
    )


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_the_etags_of_bytes_sent_in_one_put_are_their_md5() -> None:
    assert etags_of_bytes(md5(b"abc"), [md5(b"abc")], multipart=False) == {md5(b"abc")}


def test_the_etags_of_bytes_sent_in_parts_are_the_whole_md5_and_md5_of_md5s() -> None:
    parts = [md5(b"ab"), md5(b"c")]
    assert etags_of_bytes(md5(b"abc"), parts, multipart=True) == {
        md5(b"abc"),
        multipart_etag(parts),
    }
    assert multipart_etag(parts).endswith("-2")


def test_the_etags_of_a_file_are_those_of_the_same_bytes_sent(tmp_path: Path) -> None:
    """The ETags taken before sending (an object already there) and after (verification) agree."""
    data = bytes(range(256)) * 40_000  # 10 MB: two parts of 5 MiB and a rest
    path = tmp_path / "a.mp4"
    path.write_bytes(data)
    part_size = 5 * 1024 * 1024
    spans = plan_parts(len(data), part_size)
    sent = [md5(data[span.offset : span.offset + span.size]) for span in spans]
    assert etags_of_file(str(path), len(data), part_size) == etags_of_bytes(
        md5(data), sent, multipart=True
    )
    assert etags_of_file(str(path), len(data), len(data)) == {md5(data)}


ETAGS = {"0123", "4567-3"}


@pytest.mark.parametrize(
    ("facts", "problems"),
    [
        (ObjectFacts(etag="0123", size=10, sha256=SHA), []),
        (ObjectFacts(etag="4567-3", size=10, sha256=""), []),  # metadata lost, ETag of the bytes
        (None, ["object missing upstream"]),
        (
            ObjectFacts(etag="ffff", size=10, sha256=""),
            [
                "ETag ffff is none of ['0123', '4567-3']",
                "sha256 metadata missing and the ETag is not of the bytes sent",
            ],
        ),
        (ObjectFacts(etag="0123", size=9, sha256=SHA), ["size 9 != 10"]),
        (
            ObjectFacts(etag="0123", size=10, sha256="cd" * 32),
            [f"sha256 metadata {'cd' * 32!r} != {SHA}"],
        ),
    ],
)
def test_verification_problems(facts: ObjectFacts | None, problems: list[str]) -> None:
    assert verification_problems(facts, 10, SHA, ETAGS) == problems
