"""`edged verify FILE`: a clip against its C2PA manifest, or a recording against its signed
sidecar; what was signed, by whom, and whether anything differs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from edged.provenance.clip import ClipCheck, check_clip
from edged.provenance.sidecar import SidecarCheck, check_segment


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: tuple[str, ...]


def anchors_problem(trust_anchors: bytes) -> str | None:
    """Why a trust anchors file cannot be used, or None."""
    try:
        x509.load_pem_x509_certificates(trust_anchors)
    except ValueError:
        return "holds no PEM certificate"
    return None


def verify_file(path: Path, trust_anchors: bytes | None = None) -> Verdict:
    """Verify a clip (C2PA) or a recording segment (its sidecar); blocking."""
    anchors = tuple(x509.load_pem_x509_certificates(trust_anchors)) if trust_anchors else ()
    if path.suffix == ".json":
        return segment_verdict(path.with_suffix(".mp4"), path, anchors)
    if not path.is_file():
        return Verdict(False, (f"{path.name}: no such file",))
    clip = check_clip(path, trust_anchors.decode() if trust_anchors else None)
    if clip.found:
        return clip_verdict(path.name, clip)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return segment_verdict(path, sidecar, anchors)
    return Verdict(False, (f"{path.name}: no C2PA manifest and no sidecar {sidecar.name}",))


def segment_verdict(video: Path, sidecar: Path, anchors: tuple[x509.Certificate, ...]) -> Verdict:
    for needed in (video, sidecar):
        if not needed.is_file():
            return Verdict(False, (f"{video.name}: {needed.name} is missing",))
    check = check_segment(video, sidecar, anchors)
    head = (
        f"{video.name}: matches its signed sidecar {sidecar.name}"
        if check.valid
        else f"{video.name}: MISMATCH with its sidecar {sidecar.name}"
    )
    return Verdict(check.valid, (head, *sidecar_lines(check)))


def sidecar_lines(check: SidecarCheck) -> tuple[str, ...]:
    document = check.document
    lines = [f"  problem: {problem}" for problem in check.problems]
    if check.signer:
        lines.append(f"  signed by {check.signer} ({trust_text(check.trusted, check.self_made)})")
        lines.append(f"  issued by {check.issuer}")
    if document:
        lines += [
            f"  sha256 {document.get('sha256')}, {document.get('size')} bytes",
            f"  recorded {document.get('start')} to {document.get('end')}",
            f"  stream {document.get('stream')}, device {document.get('device')}",
            f"  node {document.get('node')}, event {document.get('event')}",
        ]
    return tuple(lines)


def clip_verdict(name: str, check: ClipCheck) -> Verdict:
    head = f"{name}: C2PA manifest valid" if check.valid else f"{name}: C2PA manifest MISMATCH"
    lines = [head, *(f"  problem: {failure}" for failure in check.failures)]
    self_made = "self-made" in check.signer
    lines.append(f"  signed by {check.signer} ({trust_text(check.trusted, self_made)})")
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
    return Verdict(check.valid, tuple(lines))


def trust_text(trusted: bool, self_made: bool) -> str:
    if trusted:
        return "trusted: its chain ends at a given trust anchor"
    if self_made:
        return "untrusted: the box's own self-made certificate"
    return "untrusted: no given trust anchor vouches for it"
