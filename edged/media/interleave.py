"""The order a stream's two tracks are written in, shared by the recorder and the live HLS: pure,
no I/O.

An AAC packet waits for the pictures to pass its time (so a segment's sound ends where its
pictures do; with no pictures coming, the oldest beyond HELD_AUDIO_PACKETS are let go, about
5 s), and a frame waits for the sound to reach it (the AAC encoder runs some 60 ms behind), at
most MAX_AUDIO_WAIT_SECONDS. A segment closed because recording stopped waits as long, at most,
for the sound of its last frame.
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

from edged.media.packets import EncodedPacket

HELD_AUDIO_PACKETS = 256
# Queued to a writer's thread when the sound is gone for good: frames stop waiting for it.
AUDIO_ENDED: Final = "audio-ended"
MAX_AUDIO_WAIT_SECONDS = 1.0


def frame_may_go(frame: float, newest: float, sound_reached: float, *, waits: bool) -> bool:
    """Whether a held frame (at `frame` seconds; the newest held at `newest`) is written now: the
    sound has reached its time, or it has waited MAX_AUDIO_WAIT_SECONDS, or nothing `waits`
    (no sound, or the recording ends)."""
    if not waits or sound_reached >= frame:
        return True
    return newest - frame >= MAX_AUDIO_WAIT_SECONDS


def segment_may_close(
    held_frames: int, video_end: float, sound_reached: float, *, waits: bool
) -> bool:
    """Whether a segment whose recording stopped is finished now: every frame queued before the
    stop is written and the sound has reached the last one's end (`video_end`), or nothing
    `waits` (no sound, or the wait is over)."""
    return not waits or (held_frames == 0 and sound_reached >= video_end)


class Item(NamedTuple):
    """A packet of one of the two tracks: a frame with the stream's SPS/PPS, or an AAC packet
    (`audio`) with its AudioSpecificConfig."""

    packet: EncodedPacket
    extradata: bytes
    audio: bool = False


class Interleaver:
    """The held frames and AAC packets of a stream, and which of them is written next.

    `hold` takes each packet as it comes; `next` gives them back in the order they are written:
    the sound that starts before the video's end (or before the next frame that may go), then
    that frame. A sound packet whose DTS does not follow the last one given (its timeline
    restarted) is skipped, never given: a muxer refuses it."""

    def __init__(self) -> None:
        self._frames: deque[Item] = deque()
        self._sound: deque[Item] = deque()
        self.sound_reached = float("-inf")  # seconds: the end of the newest AAC packet held
        self.video_end = float("-inf")  # seconds: the end of the last frame given
        self.dropped_sound = 0  # AAC packets let go unwritten: too many held, or overlapping
        self._sound_dts: int | None = None  # of the last AAC packet given

    @property
    def held_frames(self) -> int:
        return len(self._frames)

    def held_span(self) -> tuple[float, float] | None:
        """(oldest, newest) start in seconds of the frames held; None when none is."""
        if not self._frames:
            return None
        return self._frames[0].packet.seconds, self._frames[-1].packet.seconds

    def hold(self, item: Item) -> None:
        if not item.audio:
            self._frames.append(item)
            return
        if len(self._sound) >= HELD_AUDIO_PACKETS:
            self._sound.popleft()
            self.dropped_sound += 1
        self._sound.append(item)
        ending = item.packet.end_seconds
        self.sound_reached = max(self.sound_reached, ending)

    def drop_sound_before(self, seconds: float) -> None:
        """Let go the held sound that starts before `seconds` (before a recording's first frame:
        not counted as dropped)."""
        while self._sound and self._sound[0].packet.seconds < seconds:
            self._sound.popleft()

    def next(self, *, waits: bool) -> Item | None:
        """What to write now, or None: nothing may go yet. `waits`: frames wait for the sound
        (see frame_may_go); not while there is none, or when everything held is written."""
        frame = self._frames[0] if self._frames else None
        goes = frame is not None and frame_may_go(
            frame.packet.seconds, self._frames[-1].packet.seconds, self.sound_reached, waits=waits
        )
        before = max(self.video_end, frame.packet.seconds) if frame and goes else self.video_end
        while self._sound and self._sound[0].packet.seconds < before:
            sound = self._sound.popleft()
            if self._sound_dts is not None and sound.packet.dts <= self._sound_dts:
                self.dropped_sound += 1
                continue
            self._sound_dts = sound.packet.dts
            return sound
        if frame is None or not goes:
            return None
        self._frames.popleft()
        self.video_end = frame.packet.end_seconds
        return frame
