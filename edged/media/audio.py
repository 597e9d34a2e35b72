"""A stream's sound, the pure parts: where it comes from, and its timestamps on the video's clock.

Samples are stamped by counting them from the first one, placed on the pipeline's clock by the
first buffer's capture time; the capture times that follow only correct the count when it drifts
from them (a device's crystal is not the box's clock) or when samples were never delivered (a gap,
filled with silence so the track stays continuous). No I/O here: `audio_capture.py` is the adapter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass

from edged.config import AudioConfig, MediaConfig

ALSA_CONFIG_PATH = "/usr/share/alsa/alsa.conf"
# How far the sample count may stray from the capture times before it is corrected: a drift this
# size is below what a viewer notices (lip sync is judged at about 45 ms).
DRIFT_TOLERANCE_SECONDS = 0.04
# Capture times are late by the scheduler's whims; the earliest over the last this many seconds of
# samples is the truth. Counted in samples, not in time: after a stall of the capture thread, the
# burst of buffers the device kept brings the earliest back, so a stall is not taken for a gap.
DRIFT_WINDOW_SECONDS = 0.5
# A gap longer than this is not filled with silence: the track starts again after it.
MAX_FILL_SECONDS = 2.0
LAYOUT = "stereo"  # every stream's sound is encoded, recorded and sent as stereo


def ensure_alsa_config(environ: MutableMapping[str, str]) -> bool:
    """Point PyAV's bundled ALSA library at the system's config when nothing else does (the
    wheel's library looks at its build machine's path); True when it was set here."""
    if environ.get("ALSA_CONFIG_PATH"):
        return False
    environ["ALSA_CONFIG_PATH"] = ALSA_CONFIG_PATH
    return True


@dataclass(frozen=True)
class AudioSpec:
    """Where a stream's sound comes from: an ALSA device or a lavfi graph (the stand-in)."""

    kind: str  # "alsa" or "lavfi"
    location: str
    sample_rate: int
    bitrate: int

    @property
    def label(self) -> str:
        """The device as the status and the sidecar show it."""
        return self.location if self.kind == "alsa" else f"lavfi:{self.location}"


def audio_spec(
    stream: str,
    audio: AudioConfig,
    media: MediaConfig,
    paired: str | None = None,
) -> AudioSpec | None:
    """A stream's sound source: the `[audio] devices` override for it, else `paired` (the sound
    card on its camera's USB device), else the stand-in, else none."""
    if not audio.enabled:
        return None
    if stream in audio.devices:
        return AudioSpec("alsa", audio.devices[stream], audio.sample_rate, audio.bitrate)
    if paired and paired not in audio.devices.values():  # a hw: device opens once
        return AudioSpec("alsa", paired, audio.sample_rate, audio.bitrate)
    if media.audio_stand_in:
        graph = paced_graph(media.audio_stand_in)
        return AudioSpec("lavfi", graph, audio.sample_rate, audio.bitrate)
    return None


def paced_graph(graph: str) -> str:
    """A lavfi audio graph delivered at the clock's pace, as a sound card delivers."""
    return graph if "realtime" in graph else f"{graph},arealtime"


def describe_audio(spec: AudioSpec | None, failure: str, *, pulled: bool = False) -> str:
    """The stream status' audio line: the device, why the stream is video-only (`pulled`: its
    sound card was unplugged), or that there is none."""
    if spec is None:
        return "no audio device"
    if pulled:
        return f"video only: {spec.label} unplugged"
    if failure:
        return f"video only: {failure}"
    return f"audio: {spec.label}"


@dataclass(frozen=True)
class Stamp:
    """What to do with a buffer of captured samples: insert `silence` samples before it (samples
    never came), drop `drop` samples after taking it (the count ran ahead of the clock), or, after
    a gap too long to fill, start the track again (`restart`: at `start - silence`). `start` is
    the pts (in samples) of the buffer's first sample; `missing` the samples the source never
    delivered (the silence before a source's first sample is not missing: it had not started)."""

    start: int
    silence: int = 0
    drop: int = 0
    restart: bool = False
    missing: int = 0


class AudioTimeline:
    """The sample count of a stream's audio, kept on the video's clock.

    `place(end, samples, held)` takes each buffer's capture time (seconds on the pipeline's clock,
    when its last sample arrived), its length and how many samples wait before it not yet encoded
    (at most those and the buffer's can be dropped), and says how to keep the count honest.
    `next_pts` is the pts (in samples) of the sample after the last one placed.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.next_pts: int | None = None
        # False until the first window was judged: a first buffer that came late placed the
        # start late, and the samples dropped to set it right should be the leading silence.
        self.settled = False
        self._lateness: deque[tuple[int, float]] = deque()  # (pts after the buffer, lateness)

    def place(self, end: float, samples: int, held: int = 0) -> Stamp:
        captured_at = max(round(end * self.rate) - samples, 0)
        if self.next_pts is None:  # the sound starts with the pictures, in silence until it came
            self.next_pts = captured_at + samples
            lead = captured_at if captured_at <= MAX_FILL_SECONDS * self.rate else 0
            return Stamp(captured_at, silence=lead, restart=True)
        lateness = end - (self.next_pts + samples) / self.rate
        self._lateness.append((self.next_pts + samples, lateness))
        window = round(DRIFT_WINDOW_SECONDS * self.rate)
        if self._lateness[-1][0] - self._lateness[0][0] < window:
            return self._take(samples, Stamp(self.next_pts))  # too few samples to judge yet
        self.settled = True
        while self._lateness[-1][0] - self._lateness[1][0] >= window:
            self._lateness.popleft()
        silence, drop = correction(min(value for _, value in self._lateness), self.rate)
        if silence > MAX_FILL_SECONDS * self.rate:
            missing = max(captured_at - self.next_pts, 0)
            stamp = Stamp(self.next_pts + missing, restart=True, missing=missing)
        else:
            drop = min(drop, held + samples)
            stamp = Stamp(self.next_pts + silence, silence, drop, missing=silence)
        if stamp.restart:
            self._lateness.clear()
        elif stamp.silence or stamp.drop:  # what was measured, as the stamps now stand
            shift = (stamp.drop - stamp.silence) / self.rate
            self._lateness = deque((pts, value + shift) for pts, value in self._lateness)
        return self._take(samples, stamp)

    def _take(self, samples: int, stamp: Stamp) -> Stamp:
        self.next_pts = stamp.start + samples - stamp.drop
        return stamp


def correction(lateness: float, rate: int) -> tuple[int, int]:
    """(samples to insert, samples to drop) for a count whose least lateness over the window is
    `lateness` seconds: insert when it fell behind the clock, drop when it ran ahead."""
    if lateness > DRIFT_TOLERANCE_SECONDS:
        return round(lateness * rate), 0
    if lateness < -DRIFT_TOLERANCE_SECONDS:
        return 0, round(-lateness * rate)
    return 0, 0
