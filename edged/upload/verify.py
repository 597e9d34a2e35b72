"""Whether an object upstream holds a file's bytes: pure decisions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from edged.s3bucket import ObjectFacts
from edged.upload.policy import multipart_etag


def etags_of_bytes(whole_md5: str, part_md5s: Sequence[str], multipart: bool) -> set[str]:
    """The ETags an object of these bytes may carry: S3 calls it opaque and servers differ.

    AWS, moto and MinIO give a multipart object md5-of-part-md5s-N; others give the MD5 of the
    whole object, as for a single PUT (whose one part's md5 is the whole's).
    """
    etags = {whole_md5} if whole_md5 else set()
    etags.add(multipart_etag(list(part_md5s)) if multipart else part_md5s[0])
    return etags


def sha256_metadata_problem(stored: str, queued: str, etag_of_bytes_sent: bool) -> str | None:
    """What is wrong with an object's sha256 metadata, or None when it does not refute the upload.

    Present, it must equal the sha256 taken at enqueue. Absent (a server that keeps user metadata
    in memory only, as rclone's serve s3, forgets it on restart) it proves nothing either way:
    then the ETag must be one computed from the bytes sent (whole MD5 or md5-of-part-md5s), whose
    sha256 was checked equal to the one taken at enqueue.
    """
    if stored == queued:
        return None
    if stored:
        return f"sha256 metadata {stored!r} != {queued}"
    if etag_of_bytes_sent:
        return None
    return "sha256 metadata missing and the ETag is not of the bytes sent"


def verification_problems(
    facts: ObjectFacts | None, size: int, sha256: str, etags_of_bytes: set[str]
) -> list[str]:
    """Why the object upstream is not the file sent (size, ETag, sha256 metadata); [] if it is."""
    if facts is None:
        return ["object missing upstream"]
    problems = []
    if facts.etag not in etags_of_bytes:
        problems.append(f"ETag {facts.etag} is none of {sorted(etags_of_bytes)}")
    if facts.size != size:
        problems.append(f"size {facts.size} != {size}")
    metadata = sha256_metadata_problem(
        facts.sha256, sha256, etag_of_bytes_sent=facts.etag in etags_of_bytes
    )
    if metadata:
        problems.append(metadata)
    return problems


def existing_object(
    facts: ObjectFacts | None, size: int, sha256: str, etags_of_bytes: set[str]
) -> str:
    """What to do about an object already at the key: "send", "done" (the same bytes) or "refuse".

    The same bytes: the size and an ETag of this file's bytes, and a sha256 metadata that is this
    file's or lost (a server that forgot it). Another sha256, or another ETag without a sha256,
    is other bytes: never replaced. An object that claims this file's sha256 but whose size or
    ETag are not of these bytes (a torn or unverifiable object) may be sent again.
    """
    if facts is None:
        return "send"
    same_bytes = facts.size == size and facts.etag in etags_of_bytes
    if facts.sha256 and facts.sha256 != sha256:
        return "refuse"
    if same_bytes:
        return "done"
    return "send" if facts.sha256 == sha256 else "refuse"
