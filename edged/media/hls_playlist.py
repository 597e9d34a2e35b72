"""The live HLS media playlist (RFC 8216): the names of a run's init and segments, and the
window a stream serves, numbered on across the stream's runs. Pure: no I/O, no clock.

Each run of a stream's HLS (a muxer: a start, a camera replugged, a thermal step) names its init
and segments with a token of its own, so a URL names one run's bytes for ever and a cache may keep
it (`immutable`). The numbering goes on across a stream's runs (`HlsWindow.following`): a
player's media sequence never goes back (RFC 8216 6.2.1), and the first segment of a run after
another is marked as a discontinuity (another init, another encoder). The run before's segments
stay listed (under their own init) until they slide out of the window, and are served while
listed (6.2.2: a segment stays available for a while after it leaves a playlist, and a playlist
never shrinks under 3 target durations).
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

_RUN = "[0-9a-f]{8}"
_INIT_NAME = re.compile(rf"init-({_RUN})\.mp4", re.ASCII)
_SEGMENT_NAME = re.compile(rf"segment-({_RUN})-(0|[1-9][0-9]{{0,11}})\.m4s", re.ASCII)


def new_run() -> str:
    """A run's token: random, so a restart of the daemon never repeats one either."""
    return secrets.token_hex(4)


def init_name(run: str) -> str:
    """The name the playlist lists a run's init segment under."""
    return f"init-{run}.mp4"


def init_run(name: str) -> str | None:
    """The run of an init segment's name, only in the form `init_name` writes."""
    match = _INIT_NAME.fullmatch(name)
    return match.group(1) if match else None


def segment_name(run: str, sequence: int) -> str:
    """The name the playlist lists a run's media segment under."""
    return f"segment-{run}-{sequence}.m4s"


def segment_key(name: str) -> tuple[str, int] | None:
    """(run, sequence number) of a segment name, only in the form `segment_name` writes: no
    leading zeros, ASCII digits only (so each segment has one URL and caches hold one copy)."""
    match = _SEGMENT_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


@dataclass(frozen=True)
class HlsSegment:
    sequence: int
    data: bytes
    duration: float
    started: float  # wall clock of its first frame
    discontinuity: bool = False  # the first of a run after another: #EXT-X-DISCONTINUITY
    run: str = ""  # the run that made it (its name, its init); "" until a window takes it


def listed_inits(
    inits: tuple[tuple[str, bytes], ...], segments: tuple[HlsSegment, ...]
) -> tuple[tuple[str, bytes], ...]:
    """The (run, init) pairs of `inits` whose run still has a segment among `segments`."""
    runs = {segment.run for segment in segments}
    return tuple((run, init) for run, init in inits if run in runs and init)


def target_for(duration: float) -> int:
    """The least EXT-X-TARGETDURATION a segment of `duration` s allows: its duration rounded to
    the nearest integer (RFC 8216 4.3.3.1; halves up), not its ceiling, so a 1 s GOP's segment
    of 1.033 s keeps a 1 s target and the players reloading every second."""
    return max(1, math.floor(duration + 0.5))


@dataclass(frozen=True)
class HlsWindow:
    """What HLS serves at one moment: immutable, replaced whole by the muxer thread, so the event
    loop reads it without a lock. This run's segments, after those of the runs before still in
    the window (at most the window's size in all); the numbers go on from the stream's run
    before (`following`)."""

    init: bytes = b""  # this run's
    segments: tuple[HlsSegment, ...] = ()  # oldest first; the runs before's, then this run's
    target_duration: int = 1
    run: str = field(default_factory=new_run)
    next_sequence: int = 0  # the media sequence number of the next segment
    discontinuity_sequence: int = 0  # the marked segments gone from the window (RFC 8216 4.3.3.3)
    discontinuity: bool = False  # the next segment is the first of a run after another
    earlier_inits: tuple[tuple[str, bytes], ...] = ()  # (run, init) of the runs before listed

    def following(self, run: str) -> HlsWindow:
        """The window of the stream's next run: its segments numbered on from this one's, its
        first marked as a discontinuity (when any came before). This window's segments stay
        listed, with their inits, until they slide out. The target duration is kept: RFC 8216
        6.2.1 forbids changing it."""
        return HlsWindow(
            segments=self.segments,
            target_duration=self.target_duration,
            run=run,
            next_sequence=self.next_sequence,
            discontinuity_sequence=self.discontinuity_sequence,
            discontinuity=self.next_sequence > 0,
            earlier_inits=listed_inits((*self.earlier_inits, (self.run, self.init)), self.segments),
        )

    def numbering(self) -> HlsWindow:
        """This window without its bytes: no segment listed (their marks counted as gone), no
        init; what a stream's next run needs after a long absence."""
        return HlsWindow(
            target_duration=self.target_duration,
            run=self.run,
            next_sequence=self.next_sequence,
            discontinuity_sequence=self._gone_marks(self.segments),
            discontinuity=self.discontinuity,
        )

    def listed_seconds(self) -> float:
        """How long the segments listed now play for."""
        return sum(segment.duration for segment in self.segments)

    def _gone_marks(self, gone: tuple[HlsSegment, ...]) -> int:
        return self.discontinuity_sequence + sum(segment.discontinuity for segment in gone)

    def with_segment(self, segment: HlsSegment, window: int) -> HlsWindow:
        """The next window: `segment` added (this run's, unless it names another), the oldest
        gone past `window` segments, and the inits of runs no longer listed."""
        held = (*self.segments, segment if segment.run else replace(segment, run=self.run))
        gone = held[: max(0, len(held) - window)]
        kept = held[len(gone) :]
        return replace(
            self,
            segments=kept,
            target_duration=max(self.target_duration, target_for(segment.duration)),
            next_sequence=segment.sequence + 1,
            discontinuity_sequence=self._gone_marks(gone),
            discontinuity=False,
            earlier_inits=listed_inits(self.earlier_inits, kept),
        )

    def with_next(self, data: bytes, duration: float, started: float, window: int) -> HlsWindow:
        """The next window with a segment of these bytes, numbered and marked next."""
        segment = HlsSegment(
            self.next_sequence, data, duration, started, self.discontinuity, self.run
        )
        return self.with_segment(segment, window)

    def playlist(self) -> str:
        """The media playlist (RFC 8216) over the segments held now: each run's under its own
        #EXT-X-MAP, after the #EXT-X-DISCONTINUITY that marks its first."""
        first = self.segments[0] if self.segments else None
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{first.sequence if first else self.next_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        if first is None:
            lines.append(f'#EXT-X-MAP:URI="{init_name(self.run)}"')
        mapped = None
        for segment in self.segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")  # before the new init's EXT-X-MAP
            if segment.run != mapped:
                lines.append(f'#EXT-X-MAP:URI="{init_name(segment.run)}"')
                mapped = segment.run
            stamp = datetime.fromtimestamp(segment.started, UTC).isoformat(timespec="milliseconds")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{stamp.replace('+00:00', 'Z')}")
            lines.append(f"#EXTINF:{segment.duration:.3f},")
            lines.append(segment_name(segment.run, segment.sequence))
        return "\n".join(lines) + "\n"

    def segment(self, run: str, sequence: int) -> HlsSegment | None:
        """A segment listed now, of this run or of one before; None once it left the window."""
        return next((s for s in self.segments if s.run == run and s.sequence == sequence), None)

    def init_of(self, run: str) -> bytes:
        """The init segment of `run`: this run's (empty before it is written) or that of a run
        before whose segments are still listed; empty for any other."""
        if run == self.run:
            return self.init
        return next((init for earlier, init in self.earlier_inits if earlier == run), b"")


def carried(window: HlsWindow, idle_seconds: float) -> HlsWindow:
    """What a stream's next run starts from, `idle_seconds` after its last run stopped: the
    whole window while a player of the last run could still be playing its segments (they stay
    listed, 6.2.2), only its numbers after that (a camera unplugged a while)."""
    return window if idle_seconds <= window.listed_seconds() else window.numbering()
