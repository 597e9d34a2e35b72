"""What the spool holds of a stream, as clips need it (blocking: call it in a thread)."""

from __future__ import annotations

import logging
from pathlib import Path

from edged.clips.plan import Recorded, Span
from edged.media.recorder import PART_SUFFIX, parse_segment_name, segment_from_sidecar

logger = logging.getLogger(__name__)


def recorded_segments(spool: Path, stream: str) -> list[Recorded]:
    """The stream's closed segments (those with a sidecar and their file), oldest first."""
    found = []
    for sidecar in sorted((spool / stream).glob("*.json")):
        video = sidecar.with_suffix(".mp4")
        try:
            segment = segment_from_sidecar(sidecar)
        except FileNotFoundError:
            continue  # deleted by retention meanwhile
        except (ValueError, KeyError, TypeError, OSError) as error:
            logger.warning("clips: ignoring sidecar %s: %s", sidecar.name, error)
            continue
        if video.exists():
            found.append(
                Recorded(str(video), segment.start, segment.end, segment.sha256, segment.device)
            )
    return sorted(found, key=lambda seg: seg.start)


def open_segment(spool: Path, stream: str, now: float) -> Span | None:
    """The segment being written now, from when it opened to `now`; None when none is."""
    opened = []
    for part in (spool / stream).glob(f"*{PART_SUFFIX}"):
        name = parse_segment_name(part.name.removesuffix(PART_SUFFIX))
        if name is not None:
            opened.append(name.opened)
    return Span(max(opened), now) if opened else None
