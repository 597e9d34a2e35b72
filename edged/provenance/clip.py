"""C2PA for finished clips: sign one (c2pa-python's Builder), read and check one (its Reader).

Both block (the native library reads and writes the whole file): callers use a thread.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import c2pa  # type: ignore[import-untyped]  # no stubs, no py.typed

from edged import __version__
from edged.errors import MediaError
from edged.provenance.claim import CAPTURE_LABEL, MEDIA_TYPE, ClipClaim, manifest_definition
from edged.provenance.identity import SigningIdentity

# A failure code that says who vouches for the signer, not that the file changed: reported as
# "untrusted", never a mismatch. Everything else in c2pa's failure list is one.
UNTRUSTED = "signingCredential.untrusted"
VALID_STATES = ("Valid", "Trusted")  # a reader that gave no state does not count as valid
_ALGORITHMS = {"Ed25519": c2pa.C2paSigningAlg.ED25519, "ES256": c2pa.C2paSigningAlg.ES256}


def sign_clip(source: Path, dest: Path, claim: ClipClaim, identity: SigningIdentity) -> None:
    """Write `source` with a signed C2PA manifest to `dest` (a temporary file, then a rename:
    `dest` is never seen half-written). Blocking. Raises MediaError naming the clip."""
    temporary = dest.with_name(f".{dest.name}.signing")
    info = c2pa.C2paSignerInfo(
        _ALGORITHMS[identity.algorithm],
        "".join(identity.chain_pem()).encode(),
        identity.key_pem(),
        None,
    )
    try:
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder(manifest_definition(claim, __version__)) as builder,
            source.open("rb") as reading,
            temporary.open("w+b") as writing,
        ):
            builder.sign(signer, MEDIA_TYPE, reading, writing)
            writing.flush()
            os.fsync(writing.fileno())
        os.replace(temporary, dest)
    except (c2pa.C2paError, OSError) as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise MediaError(f"cannot sign clip {dest.name}: {error}") from error


@dataclass(frozen=True)
class ClipCheck:
    """What a clip's manifest says and whether it holds."""

    found: bool
    trusted: bool = False  # c2pa's state is Trusted: the signer chains to a given anchor
    state: str = ""  # c2pa's validation state: Invalid, Valid or Trusted
    serial: str = ""  # the signing certificate's serial number (decimal)
    signer: str = ""
    generator: str = ""
    failures: tuple[str, ...] = ()  # c2pa's failure codes with their explanation
    assertions: tuple[str, ...] = ()
    capture: dict[str, Any] = field(default_factory=dict)
    ingredients: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.found and not self.failures and self.state in VALID_STATES


def check_clip(path: Path, trust_anchors: str | None = None) -> ClipCheck:
    """Read `path`'s C2PA manifest and validate it (blocking); `trust_anchors`: PEM CAs."""
    settings = {"trust": {"trust_anchors": trust_anchors}} if trust_anchors else {}
    try:
        with (
            c2pa.Context.from_dict(settings) as context,
            path.open("rb") as stream,
            c2pa.Reader(MEDIA_TYPE, stream, None, context) as reader,
        ):
            manifest = reader.get_active_manifest()
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as error:
        return ClipCheck(found=False, failures=(f"no readable C2PA manifest ({error})",))
    if manifest is None:
        return ClipCheck(found=False, failures=("no C2PA manifest",))
    return clip_check_from(manifest, state, results)


def clip_check_from(
    manifest: dict[str, Any], state: str | None, results: dict[str, Any]
) -> ClipCheck:
    """The check from what c2pa's Reader returned (pure)."""
    active = results.get("activeManifest", {})
    failures = tuple(
        f"{item.get('code')}: {item.get('explanation', '')}"
        for item in active.get("failure", [])
        if item.get("code") != UNTRUSTED
    )
    info = manifest.get("signature_info", {})
    signer = ", ".join(
        part
        for part in (
            f"CN={info['common_name']}" if info.get("common_name") else "",
            f"O={info['issuer']}" if info.get("issuer") else "",
        )
        if part
    )
    generators = manifest.get("claim_generator_info", [])
    generator = " ".join(
        f"{item.get('name', '')}/{item.get('version', '')}" for item in generators[:1]
    )
    assertions = manifest.get("assertions", [])
    capture: dict[str, Any] = next(
        (a.get("data", {}) for a in assertions if a.get("label") == CAPTURE_LABEL), {}
    )
    return ClipCheck(
        found=True,
        trusted=state == "Trusted",
        state=state or "",
        serial=str(info.get("cert_serial_number", "")),
        signer=signer,
        generator=generator,
        failures=failures,
        assertions=tuple(str(a.get("label")) for a in assertions),
        capture=capture,
        ingredients=tuple(
            f"{i.get('title')} ({i.get('instance_id', '')})"
            for i in manifest.get("ingredients", [])
        ),
    )
