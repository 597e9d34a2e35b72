"""Signed recording sidecars: a detached signature with the box's key inside the sidecar JSON.

Recording segments are fragmented MP4 written as they are captured, which c2pa cannot sign; their
sidecar names the segment's sha256, size, times, device, node and event, and the box signs the
sidecar. The signature is a `signature` field of the sidecar itself, so whatever ships the sidecar
(the uploader) ships it too. It covers every other field of the document, in canonical form
(`canonical_bytes`): editing any of them, adding one or removing one breaks it.

The canonical form, for a verifier in any language: the document without its `signature` field,
as JSON with the object keys sorted by code point (all keys are ASCII), no whitespace at all,
every character outside ASCII written as a lowercase \\uXXXX escape (UTF-16 surrogate pairs
above U+FFFF), the usual short escapes (\\" \\\\ \\b \\f \\n \\r \\t) and \\u00XX for other control
characters; values are strings, integers (decimal, no exponent, within +-(2^53 - 1)), true,
false, null, arrays and objects: never a fraction, an exponent, NaN or Infinity (times are
RFC 3339 strings). A sidecar
that repeats a key, or holds a number that is not an integer, is refused before its signature
is checked: readers that keep the first of two values and readers that keep the last would
otherwise see different documents under one signature.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from edged.fileio import file_sha256
from edged.provenance.identity import (
    SigningIdentity,
    signing_key,
    verify_signature,
)

SIGNATURE = "signature"
MAX_INTEGER = 2**53 - 1  # what every JSON reader keeps exactly


class NotCanonical(ValueError):
    """A sidecar outside the canonical form: a repeated key, a number that is not an integer."""


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a sidecar's signature covers: every field but the signature, keys sorted, no
    whitespace, ASCII only (the same document always gives the same bytes); NotCanonical for a
    value outside the form (see the module's note)."""
    covered = {key: value for key, value in document.items() if key != SIGNATURE}
    if problem := _not_canonical(covered):
        raise NotCanonical(problem)
    return json.dumps(
        covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _not_canonical(value: object, where: str = "") -> str | None:
    """Why `value` has no canonical form, or None."""
    if isinstance(value, float):
        return f"{where or 'a value'} is a number that is not an integer"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return f"{where or 'a value'} is an integer past 2^53 - 1"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return "a key is not text"
            if problem := _not_canonical(item, key):
                return problem
    if isinstance(value, list | tuple):
        return next((p for item in value if (p := _not_canonical(item, where))), None)
    return None


def parse_sidecar(text: str) -> dict[str, Any]:
    """A sidecar's JSON object; NotCanonical when it repeats a key or holds NaN or Infinity,
    ValueError when it is no JSON object."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if repeated := next((key for key in keys if keys.count(key) > 1), None):
            raise NotCanonical(f"the sidecar repeats the key {repeated[:40]!r}")
        return dict(pairs)

    def constant(name: str) -> Any:
        raise NotCanonical(f"the sidecar holds {name}, which is not JSON")

    document = json.loads(text, object_pairs_hook=unique, parse_constant=constant)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def signed(document: dict[str, Any], identity: SigningIdentity) -> dict[str, Any]:
    """`document` with its signature (blocking, but only a few microseconds of CPU)."""
    value = identity.sign(canonical_bytes(document))
    return {
        **document,
        SIGNATURE: {
            "algorithm": identity.algorithm,
            "certificates": identity.chain_pem(),
            "value": base64.b64encode(value).decode(),
        },
    }


@dataclass(frozen=True)
class SidecarCheck:
    """Whether a sidecar's signature holds, who made it, and whether the segment matches it."""

    problems: tuple[str, ...]
    signer: str = ""
    issuer: str = ""
    trusted: bool = False  # its chain ends at one of the given anchors
    leaf: x509.Certificate | None = field(default=None, compare=False)  # the signing certificate
    document: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def valid(self) -> bool:
        return not self.problems


def check_signature(
    document: dict[str, Any], anchors: tuple[x509.Certificate, ...] = ()
) -> SidecarCheck:
    """Check a sidecar's own signature (pure: no file is read)."""
    signature = document.get(SIGNATURE)
    if not isinstance(signature, dict):
        return SidecarCheck(problems=("the sidecar is not signed",))
    try:
        chain = [
            x509.load_pem_x509_certificate(text.encode())
            for text in signature.get("certificates", [])
        ]
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
    except (ValueError, TypeError, binascii.Error):
        return SidecarCheck(problems=("the sidecar's signature is malformed",))
    key = signing_key(chain[0].public_key()) if chain else None
    if key is None:
        return SidecarCheck(problems=("the sidecar's signature names no usable certificate",))
    signer = chain[0].subject.rfc4514_string()
    try:
        holds = verify_signature(key, value, canonical_bytes(document))
    except NotCanonical as problem:
        return SidecarCheck(problems=(f"{problem}: not in the canonical form, refused",))
    return SidecarCheck(
        problems=() if holds else ("the signature does not match the sidecar",),
        signer=signer,
        issuer=chain[0].issuer.rfc4514_string(),
        trusted=_chains_to(chain, anchors),
        leaf=chain[0],
    )


def check_segment(
    video: Path, sidecar: Path, anchors: tuple[x509.Certificate, ...] = ()
) -> SidecarCheck:
    """Check a recording against its signed sidecar (blocking: hashes the recording)."""
    try:
        document = parse_sidecar(sidecar.read_text(encoding="utf-8"))
    except NotCanonical as problem:
        return SidecarCheck(problems=(f"{problem}: refused",))
    except (ValueError, UnicodeDecodeError):
        return SidecarCheck(problems=(f"{sidecar.name} is not a JSON sidecar",))
    check = check_signature(document, anchors)
    return replace(
        check, problems=check.problems + segment_problems(document, video), document=document
    )


def segment_problems(document: dict[str, Any], video: Path) -> tuple[str, ...]:
    """Where the recording differs from what its sidecar says (blocking: hashes it)."""
    problems = []
    size = video.stat().st_size
    if document.get("size") != size:
        problems.append(f"the recording is {size} bytes, the sidecar says {document.get('size')}")
    if document.get("sha256") != file_sha256(video):
        problems.append("the recording's sha256 is not the sidecar's")
    if document.get("file", video.name) != video.name:
        problems.append(f"the sidecar describes {document.get('file')}, not {video.name}")
    return tuple(problems)


def same_key(certificate: x509.Certificate, other: x509.Certificate) -> bool:
    """True when both certificates carry the same public key (the key, not any name, decides)."""
    mine, theirs = certificate.public_key(), other.public_key()
    return bool(mine.public_bytes(*_SPKI) == theirs.public_bytes(*_SPKI))


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _chains_to(chain: list[x509.Certificate], anchors: tuple[x509.Certificate, ...]) -> bool:
    """True when each certificate is issued by the next and the last is, or is issued by, an
    anchor, all valid now."""
    now = datetime.now(UTC)
    if any(not c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in chain):
        return False
    for certificate, issuer in itertools.pairwise(chain):
        if not _issued_by(certificate, issuer):
            return False
    last = chain[-1]
    return any(last == anchor or _issued_by(last, anchor) for anchor in anchors)


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
