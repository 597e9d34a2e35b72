"""Retention by free disk, not by age: which recordings to delete, and when to stop recording.

The plan is a pure function of the spool and the disk; a thin loop applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SpoolFile:
    path: str
    size: int
    mtime: float
    uploaded: bool


@dataclass(frozen=True)
class RetentionPlan:
    delete: tuple[SpoolFile, ...]
    stop_recording: bool  # even after deleting what may go, free space stays under the minimum
    freed: int


def plan(
    files: Iterable[SpoolFile], free_bytes: int, min_free_bytes: int, *, delete_unuploaded: bool
) -> RetentionPlan:
    """Oldest uploaded recordings first; never one that was not uploaded unless allowed."""
    shortfall = min_free_bytes - free_bytes
    if shortfall <= 0:
        return RetentionPlan((), False, 0)
    ordered = sorted(files, key=lambda f: (not f.uploaded, f.mtime, f.path))
    chosen: list[SpoolFile] = []
    freed = 0
    for candidate in ordered:
        if freed >= shortfall:
            break
        if not candidate.uploaded and not delete_unuploaded:
            break
        chosen.append(candidate)
        freed += candidate.size
    return RetentionPlan(tuple(chosen), freed < shortfall, freed)


def plan_keeping(
    files: Iterable[SpoolFile],
    kept: Collection[str],
    free_bytes: int,
    min_free_bytes: int,
    *,
    delete_unuploaded: bool,
) -> RetentionPlan:
    """`plan`, sparing the recordings in `kept` (a clip job's sources) unless recording would
    stop without them: then they go too, after every other, oldest first. A clip job never
    stops recording."""
    files = tuple(files)
    others = [file for file in files if file.path not in kept]
    first = plan(others, free_bytes, min_free_bytes, delete_unuploaded=delete_unuploaded)
    if not first.stop_recording:
        return first
    spared = [file for file in files if file.path in kept]
    more = plan(
        spared, free_bytes + first.freed, min_free_bytes, delete_unuploaded=delete_unuploaded
    )
    return RetentionPlan(first.delete + more.delete, more.stop_recording, first.freed + more.freed)
