"""The source file of an upload: read as it is sent (blocking: run in a thread) and checked
against what was taken when it was queued (size, mtime, sha256)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edged.upload.journal import FileRecord
from edged.upload.policy import PartSpan, plan_parts
from edged.upload.verify import etags_of_bytes


class SourceProblem(Exception):
    """The source file is gone or changed since it was queued: it cannot be uploaded as queued."""


class KeyTaken(SourceProblem):
    """The upstream holds the key with other bytes: never replaced."""


@dataclass
class Digest:
    """The sha256 and the MD5 of a whole file, fed its bytes in order (the bytes sent)."""

    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    md5: hashlib._Hash = field(default_factory=lambda: hashlib.md5())  # noqa: S324 - S3's ETag

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)


def read_span(path: str, span: PartSpan, digest: Digest | None = None) -> tuple[bytes, str]:
    """One part's bytes and their md5, fed to `digest` if given (blocking)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(span.offset)
            data = handle.read(span.size)
    except OSError as error:
        raise SourceProblem(f"{path} cannot be read: {error.strerror}") from None
    if len(data) != span.size:
        raise SourceProblem(f"{path} is shorter than when it was queued")
    if digest is not None:
        digest.update(data)
    return data, hashlib.md5(data).hexdigest()  # noqa: S324 - S3's part checksum


def read_as_sent(path: str, size: int, part_size: int) -> tuple[Digest, list[str]]:
    """Read a file part by part as it is sent: its digest and each part's md5 (blocking)."""
    digest = Digest()
    spans = plan_parts(size, part_size) or [PartSpan(1, 0, size)]
    return digest, [read_span(path, span, digest)[1] for span in spans]


def etags_of_file(path: str, size: int, part_size: int) -> set[str]:
    """The ETags an object of this file's bytes may carry (blocking)."""
    digest, part_md5s = read_as_sent(path, size, part_size)
    return etags_of_bytes(digest.md5.hexdigest(), part_md5s, bool(plan_parts(size, part_size)))


def check_source(record: FileRecord) -> None:
    """The file is still there with the size and mtime it was queued with (blocking)."""
    try:
        facts = os.stat(record.path)
    except FileNotFoundError:
        raise SourceProblem(f"{record.path} was deleted before it was uploaded") from None
    except OSError as error:  # e.g. its folder was replaced by a file
        raise SourceProblem(f"{record.path} cannot be read: {error.strerror}") from None
    if facts.st_size != record.size or facts.st_mtime_ns != record.mtime_ns:
        raise SourceProblem(
            f"{record.path} changed since it was queued (size {record.size} -> {facts.st_size});"
            " refused: queue the new version again"
        )


def check_digest(record: FileRecord, digest: Digest) -> None:
    """The bytes read for sending must be the bytes hashed at enqueue (SD-card bit rot)."""
    sent = digest.sha256.hexdigest()
    if sent != record.sha256:
        raise SourceProblem(
            f"{record.path} now reads as sha256 {sent}, not the {record.sha256} it was "
            "queued with (changed on disk, or bit rot); not uploaded"
        )


def first_changed_part(sent: Mapping[int, str], part_md5s: Sequence[str]) -> int | None:
    """The first part (numbered from 1) whose md5 read now is not the md5 sent, or None."""
    for number, md5 in enumerate(part_md5s, start=1):
        if sent.get(number) != md5:
            return number
    return None
