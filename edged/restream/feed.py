"""A destination's bounded queue: the stream's fan-out offers packets on the event loop (never
waiting), the destination's sending thread takes them. `policy.admit` decides what is kept;
every video frame offered is counted exactly once as sent, dropped or still queued."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edged.media.packets import EncodedPacket
from edged.restream.policy import Admission, admit

QUEUE_FRAMES = 150  # video frames waiting for the platform (10 s at 15 fps, 5 s at 30)
QUEUE_AUDIO_PACKETS = 500  # and AAC packets (10 s at 48 kHz)


@dataclass(frozen=True)
class Item:
    packet: EncodedPacket
    extradata: bytes  # SPS/PPS (video) or the AudioSpecificConfig (audio)
    audio: bool = False
    source: int = 0  # which of the stream's pipelines (a restart starts a new clock)


@dataclass(frozen=True)
class FeedCounts:
    offered: int
    sent: int
    dropped: int  # video frames
    queued: int
    audio_dropped: int  # AAC packets


class Feed:
    """Between the loop (`offer_*`, `end_audio`) and one sending thread (`take`, `sent`,
    `lost`, `restart`); `on_drop(frames)` is called for each video drop, from either side."""

    def __init__(
        self,
        on_drop: Callable[[int], None],
        *,
        limit: int = QUEUE_FRAMES,
        audio_limit: int = QUEUE_AUDIO_PACKETS,
    ) -> None:
        self._on_drop = on_drop
        self._limit = limit
        self._audio_limit = audio_limit
        self._items: deque[Item] = deque()
        self._ready = threading.Condition()
        self._video = 0  # video frames in _items
        self._taken = 0  # video frames taken, not yet sent or lost
        self._waiting = True  # for a keyframe
        self._offered = self._sent = self._dropped = self._audio_dropped = 0
        self.live = False  # the sending thread publishes (set by it)
        self.accepting = True  # False while the destination is switched off
        self.expects_audio = False  # the stream has sound (its AAC is offered)
        self.audio_config = b""  # the stream's AudioSpecificConfig, once seen
        self.source = 0  # counts the pipelines the feed was given (each restart of the stream)

    # -- the event loop's side ----------------------------------------------------------------

    def offer_video(self, packet: EncodedPacket, extradata: bytes) -> None:
        if not self.accepting:
            return
        with self._ready:
            self._offered += 1
            step = admit(
                keyframe=packet.keyframe,
                waiting=self._waiting,
                queued=self._video,
                limit=self._limit,
                live=self.live,
            )
            dropped = 0
            if step in (Admission.RESTART, Admission.FLUSH):
                dropped = self._clear()
            if step in (Admission.DROP, Admission.FLUSH):
                dropped += 1
                self._dropped += 1
            else:
                self._items.append(Item(packet, extradata, source=self.source))
                self._video += 1
                self._waiting = False
                self._ready.notify()
            self._waiting = self._waiting or step is Admission.FLUSH
        if dropped:
            self._on_drop(dropped)

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> None:
        if not self.accepting:
            return
        self.audio_config = extradata or self.audio_config
        with self._ready:
            if self._waiting or len(self._items) - self._video >= self._audio_limit:
                self._audio_dropped += 1
                return
            self._items.append(Item(packet, extradata, audio=True, source=self.source))
            self._ready.notify()

    def new_source(self) -> None:
        """The stream restarted (a new pipeline, its clock from 0 again): what is queued is
        dropped and the next item is the new pipeline's first keyframe (the loop's side)."""
        with self._ready:
            self.source += 1
            dropped = self._clear()
            self._waiting = True
        if dropped:
            self._on_drop(dropped)

    def _clear(self) -> int:
        """Drop every queued item (lock held); the video frames dropped."""
        frames = self._video
        self._audio_dropped += len(self._items) - frames
        self._items.clear()
        self._video = 0
        self._dropped += frames
        return frames

    # -- the sending thread's side --------------------------------------------------------------

    def take(self, timeout: float) -> Item | None:
        """The oldest item, waiting at most `timeout` seconds for one."""
        with self._ready:
            if not self._items and not self._ready.wait(timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            if not item.audio:
                self._video -= 1
                self._taken += 1
            return item

    def peek_keyframe(self) -> EncodedPacket | None:
        """The keyframe at the head of the queue (a session may start), or None."""
        with self._ready:
            head = next((item for item in self._items if not item.audio), None)
            return head.packet if head is not None and head.packet.keyframe else None

    def sent(self) -> None:
        """A video frame taken was published."""
        with self._ready:
            self._sent += 1
            self._taken -= 1

    def lost(self) -> None:
        """A video frame taken could not be published (the connection failed under it)."""
        with self._ready:
            self._dropped += 1
            self._taken -= 1
        self._on_drop(1)

    def restart(self) -> None:
        """Drop what is queued and wait for the next keyframe (a session ended)."""
        with self._ready:
            dropped = self._clear()
            self._waiting = True
        if dropped:
            self._on_drop(dropped)

    def wake(self) -> None:
        """Wake a `take` waiting (to stop, or to switch off)."""
        with self._ready:
            self._ready.notify_all()

    @property
    def counts(self) -> FeedCounts:
        with self._ready:
            queued = self._video + self._taken  # a frame being written is still queued
            return FeedCounts(self._offered, self._sent, self._dropped, queued, self._audio_dropped)
