"""`edged verify FILE`: a clip against its C2PA manifest, or a recording against its signed
sidecar; what was signed, by whom, and whether anything differs.

Who signed is part of the verdict. A file is accepted when its signer chains to a given trust
anchor (`--trust-anchors`), or, without anchors, when it was signed with this box's own key (its
certificate from the data dir or `[provenance] cert_file`, compared by key, never by name). A
signature by any other key fails ("signed by an unknown key"), however intact the file is, unless
the caller asks for `any_signer` (the file is intact, whoever signed it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edged.provenance.clip import ClipCheck, check_clip
from edged.provenance.sidecar import SidecarCheck, check_segment, same_key

UNKNOWN_KEY = "signed by an unknown key: not this box's and not under a given trust anchor"
NOT_VERIFIED = (
    "signer not verified: give --trust-anchors PEM, or --data-dir/--config of the box that "
    "signed it, or --any-signer to check the content only"
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Trust:
    """Whom `verify` accepts as a signer."""

    anchors: tuple[x509.Certificate, ...] = ()  # --trust-anchors: the signer chains to one
    box: tuple[x509.Certificate, ...] = ()  # without anchors: this box's chain, leaf first
    any_signer: bool = False  # intact is enough, whoever signed (reported as unchecked)

    def c2pa_anchors(self) -> str | None:
        """The PEM c2pa is given: the anchors, or the box's own CA (its signer is then checked
        by serial number as well: `box_serial`)."""
        chosen = self.anchors or self.box[-1:]
        pem = serialization.Encoding.PEM
        return "".join(c.public_bytes(pem).decode() for c in chosen) or None

    def box_serial(self) -> str:
        return str(self.box[0].serial_number) if self.box and not self.anchors else ""


def signer_problem(trusted: bool, is_box: bool, trust: Trust) -> str | None:
    """Why the signer is not accepted, or None (pure)."""
    if (trusted and trust.anchors) or is_box or trust.any_signer:
        return None
    if not trust.anchors and not trust.box:
        return NOT_VERIFIED
    return UNKNOWN_KEY


def trust_text(trusted: bool, is_box: bool, trust: Trust) -> str:
    if trusted and trust.anchors:
        return "trusted: its chain ends at a given trust anchor"
    if is_box:
        return "this box's own key"
    if trust.any_signer:
        return "not checked (--any-signer): an unknown key"
    return "an unknown key"


def anchors_problem(trust_anchors: bytes) -> str | None:
    """Why a trust anchors file cannot be used, or None."""
    try:
        x509.load_pem_x509_certificates(trust_anchors)
    except ValueError:
        return "holds no PEM certificate"
    return None


def verify_file(path: Path, trust: Trust) -> Verdict:
    """Verify a clip (C2PA) or a recording segment (its sidecar); blocking."""
    if path.suffix == ".json":
        return segment_verdict(path.with_suffix(".mp4"), path, trust)
    if not path.is_file():
        return Verdict(False, (f"{path.name}: no such file",))
    clip = check_clip(path, trust.c2pa_anchors())
    if clip.found:
        return clip_verdict(path.name, clip, trust)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return segment_verdict(path, sidecar, trust)
    return Verdict(False, (f"{path.name}: no C2PA manifest and no sidecar {sidecar.name}",))


def segment_verdict(video: Path, sidecar: Path, trust: Trust) -> Verdict:
    for needed in (video, sidecar):
        if not needed.is_file():
            return Verdict(False, (f"{video.name}: {needed.name} is missing",))
    check = check_segment(video, sidecar, trust.anchors)
    is_box = bool(trust.box and check.leaf is not None and same_key(check.leaf, trust.box[0]))
    signer = signer_problem(check.trusted, is_box, trust) if check.signer else None
    ok = check.valid and signer is None
    head = (
        f"{video.name}: matches its signed sidecar {sidecar.name}"
        if ok
        else f"{video.name}: MISMATCH with its sidecar {sidecar.name}"
    )
    problems = tuple(f"  problem: {p}" for p in (*check.problems, *((signer,) if signer else ())))
    return Verdict(ok, (head, *problems, *sidecar_lines(check, is_box, trust)))


def sidecar_lines(check: SidecarCheck, is_box: bool, trust: Trust) -> tuple[str, ...]:
    document = check.document
    lines = []
    if check.signer:
        lines.append(f"  signed by {check.signer} ({trust_text(check.trusted, is_box, trust)})")
        lines.append(f"  issued by {check.issuer}")
    if document:
        lines += [
            f"  sha256 {document.get('sha256')}, {document.get('size')} bytes",
            f"  recorded {document.get('start')} to {document.get('end')}",
            f"  stream {document.get('stream')}, device {document.get('device')}",
            f"  node {document.get('node')}, event {document.get('event')}",
        ]
    return tuple(lines)


def clip_verdict(name: str, check: ClipCheck, trust: Trust) -> Verdict:
    is_box = bool(trust.box_serial()) and check.trusted and check.serial == trust.box_serial()
    signer = signer_problem(check.trusted, is_box, trust)
    ok = check.valid and signer is None
    head = f"{name}: C2PA manifest valid" if ok else f"{name}: C2PA manifest MISMATCH"
    lines = [head, *(f"  problem: {failure}" for failure in check.failures)]
    if check.found and check.state not in ("Valid", "Trusted"):
        lines.append(f"  problem: c2pa's validation state is {check.state or 'missing'}")
    if signer:
        lines.append(f"  problem: {signer}")
    lines.append(f"  signed by {check.signer} ({trust_text(check.trusted, is_box, trust)})")
    lines.append(f"  claim generator {check.generator}")
    capture = check.capture
    if capture:
        lines += [
            f"  captured {capture.get('start')} to {capture.get('end')}",
            f"  stream {capture.get('stream')}, device {capture.get('device')}",
            f"  node {capture.get('node')}, event {capture.get('event')}",
        ]
    lines += [f"  ingredient {ingredient}" for ingredient in check.ingredients]
    lines.append(f"  assertions: {', '.join(check.assertions)}")
    return Verdict(ok, tuple(lines))
