"""The classes of files the uploader sends, highest priority first: what a crew would send first
over a venue's thin uplink. A file's class follows from its kind (the word it was queued with).
"""

from __future__ import annotations

from enum import StrEnum


class UploadClass(StrEnum):
    GUEST = "guest"  # guests' data: signups, deletions
    CLIP = "clip"  # short clips to publish (soonest publish_at first)
    MANIFEST = "manifest"  # manifests and sidecars
    RECORDING = "recording"  # the day's footage (oldest first)


RANK = {cls: rank for rank, cls in enumerate(UploadClass)}

_BY_KIND = {
    "guest": UploadClass.GUEST,
    "signup": UploadClass.GUEST,
    "deletion": UploadClass.GUEST,
    "clip": UploadClass.CLIP,
    "highlight": UploadClass.CLIP,
    "manifest": UploadClass.MANIFEST,
    "sidecar": UploadClass.MANIFEST,
    "recording": UploadClass.RECORDING,
}


def class_of(kind: str) -> UploadClass:
    """The class of a file queued as `kind`; a kind not named here travels as a recording."""
    return _BY_KIND.get(kind, UploadClass.RECORDING)
