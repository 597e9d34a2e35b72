"""Listen to a sound source for a moment and tell its peak: `edged doctor`'s ear.

Each source is read in a thread of its own (PyAV's alsa input, or the lavfi stand-in), all at
once, each waited for until a deadline: a device that delivers nothing cannot hang the doctor.
Blocking: a command's code, never the daemon's loop.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import av

from edged.errors import MediaError
from edged.media.audio import AudioSpec
from edged.media.audio_capture import open_audio
from edged.media.level import SAMPLE_BYTES, dbfs, peak

LISTEN_SECONDS = 1.0
LISTEN_TIMEOUT_SECONDS = 5.0  # opening and a second of sound, or the device is called silent


@dataclass(frozen=True)
class Heard:
    """What a source gave in its second: its peak (-inf: not one sample above zero), or why it
    could not be listened to (`error`)."""

    peak_dbfs: float
    seconds: float = 0.0
    error: str = ""


def peak_dbfs(samples: bytes | memoryview) -> float:
    """The peak of float32 samples (machine order; 1.0 = full scale) in dBFS, as the level
    metric reads it (level.py: to 0.07 dB, -120 at the quietest), but -inf for digital silence:
    not one sample above zero is worth telling apart."""
    amplitude = peak(samples)
    return dbfs(amplitude) if amplitude > 0 else -math.inf


def _floats(frame: av.AudioFrame) -> memoryview:
    """A packed float frame's samples (its buffer may be padded past them)."""
    count = frame.samples * len(frame.layout.channels)
    return memoryview(frame.planes[0])[: count * SAMPLE_BYTES]


def _read(spec: AudioSpec, seconds: float, stop: threading.Event) -> Heard:
    """Open the source, read `seconds` of sound (or until `stop`), close it (blocking)."""
    container = open_audio(spec)
    resampler = av.AudioResampler(format="flt")  # packed float; the source's layout and rate
    peak, heard = -math.inf, 0.0
    try:
        for frame in container.decode(audio=0):
            for converted in resampler.resample(frame):
                peak = max(peak, peak_dbfs(_floats(converted)))
                heard += converted.samples / converted.sample_rate
            if heard >= seconds or stop.is_set():
                break
    finally:
        container.close()
    return Heard(peak, heard)


def listen_all(
    specs: Sequence[AudioSpec],
    seconds: float = LISTEN_SECONDS,
    timeout: float = LISTEN_TIMEOUT_SECONDS,
) -> list[Heard]:
    """Listen to every source at once for `seconds`; each result by its deadline (`timeout`
    after the start), in the order of `specs`."""
    results: list[Heard | None] = [None] * len(specs)
    stop = threading.Event()  # past the deadline: a slow source stops at its next buffer

    def listen(index: int, spec: AudioSpec) -> None:
        try:
            results[index] = _read(spec, seconds, stop)
        except (MediaError, av.FFmpegError, OSError, ValueError) as error:
            results[index] = Heard(-math.inf, error=str(error))

    threads = [
        threading.Thread(target=listen, args=item, name=f"listen-{item[0]}", daemon=True)
        for item in enumerate(specs)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    stop.set()  # a device that delivers nothing at all stays behind, a daemon thread
    return [
        result if result is not None else Heard(-math.inf, error=f"no sound in {timeout:g} s")
        for result in results
    ]
