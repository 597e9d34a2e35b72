"""Provenance: the box's signing identity, C2PA manifests on clips, signed recording sidecars.

A room of its own: it imports config, errors and small helpers, never media, upload, web or the
daemon. The daemon loads the identity once (`load_identity`, in a thread) and hands it to those
who sign: the recorder (its sidecars, `sidecar.signed`) and the clip jobs (`sign_clip`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edged.provenance.claim import ClipClaim, claim_from_sidecar
from edged.provenance.identity import SigningIdentity, load_identity

__all__ = ["ClipClaim", "ClipSigner", "SigningIdentity", "load_identity", "sign_clip"]


def sign_clip(source: Path, dest: Path, claim: ClipClaim, identity: SigningIdentity) -> None:
    """Write `source` to `dest` with a signed C2PA manifest; blocking (run it in a thread).

    `dest` appears whole or not at all; raises MediaError naming the clip. c2pa (a native
    library) is loaded with the first clip, not with the daemon.
    """
    from edged.provenance.clip import sign_clip as sign  # loaded on first use

    sign(source, dest, claim, identity)


class ClipSigner:
    """`sign_clip` with the box's identity bound, shaped for the clip jobs' seam: (source, dest,
    the clip's sidecar facts, node and event); the claim is read from the sidecar facts."""

    def __init__(self, identity: SigningIdentity) -> None:
        self.identity = identity

    def __call__(
        self, source: Path, dest: Path, sidecar: Mapping[str, Any], _node: Mapping[str, str]
    ) -> None:
        sign_clip(source, dest, claim_from_sidecar(sidecar), self.identity)
