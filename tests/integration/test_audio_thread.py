"""The audio thread keeps the recordings' sound whatever its extras do: an Opus stage or a level
meter that fails stops alone (logged once, its loss counted) while AAC flows on; an error of a
kind nobody expected ends the sound with a reason and a traceback instead of a silent death."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from edged.media.audio import AudioSpec, paced_graph
from edged.media.audio_capture import AudioCapture
from edged.media.opus import OpusStage
from edged.media.packets import EncodedPacket
from tests.support import until

pytestmark = pytest.mark.integration

SINE = "sine=frequency=440:sample_rate=48000"
SPEC = AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000)


class Heard:
    """What an audio thread gave: its AAC packets, its losses by stage, its failures."""

    def __init__(self) -> None:
        self.aac: list[EncodedPacket] = []
        self.dropped: dict[str, int] = {}
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def deliver(self, packet: EncodedPacket, extradata: bytes) -> None:
        self.aac.append(packet)

    def drop(self, stage: str, samples: int) -> None:
        with self._lock:
            self.dropped[stage] = self.dropped.get(stage, 0) + samples


def capture(heard: Heard, *, spec: AudioSpec = SPEC, **extras: object) -> AudioCapture:
    origin = time.monotonic()
    return AudioCapture(
        "cam",
        spec,
        lambda: origin,
        heard.deliver,
        heard.drop,
        heard.failures.append,
        **extras,  # type: ignore[arg-type]
    )


def refuse(_: object) -> None:
    raise ValueError("no room for it")


def errors(caplog: pytest.LogCaptureFixture, word: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and word in record.getMessage()
    ]


def test_libopus_missing_costs_the_recordings_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A WebRTC viewer listens on a box whose FFmpeg has no libopus (as an unknown codec): Opus
    stops for good after one log line and its loss is counted; AAC never notices."""
    heard = Heard()
    stage = OpusStage(SPEC.sample_rate, codec="no-such-opus")
    audio = capture(heard, deliver_opus=refuse, opus_wanted=lambda: True, opus=stage)
    audio.start()
    try:
        until(lambda: len(heard.aac) >= 30, what="AAC packets with a listener")
    finally:
        audio.stop()
    assert heard.failures == []
    assert heard.dropped.get("opus", 0) >= 29 * 1024  # every frame since the first, unheard
    assert len(errors(caplog, "Opus")) == 1


@pytest.mark.parametrize("part", ["deliver_opus", "level"])
def test_an_extra_that_fails_stops_alone(part: str, caplog: pytest.LogCaptureFixture) -> None:
    """Opus' hand-off or the level meter raises (a ValueError, as FFmpeg's errors are): that
    part stops after one log line, the sound goes on."""
    heard = Heard()
    extras: dict[str, object] = {part: refuse}
    if part == "deliver_opus":
        extras["opus_wanted"] = lambda: True
    audio = capture(heard, spec=SPEC, **extras)
    audio.start()
    try:
        until(lambda: len(heard.aac) >= 80, what="AAC packets past the first second")
    finally:
        audio.stop()
    assert heard.failures == []
    assert len(errors(caplog, "stream cam")) == 1


def test_an_unexpected_error_ends_the_sound_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception of a kind the thread does not expect (here from its clock) is logged with
    its traceback and reported: the stream goes on video-only, and says why."""
    heard = Heard()
    calls = 0

    def origin() -> float:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise LookupError("the clock went away")
        return started

    started = time.monotonic()
    audio = AudioCapture("cam", SPEC, origin, heard.deliver, heard.drop, heard.failures.append)
    audio.start()
    try:
        until(lambda: heard.failures, what="the failure reported")
    finally:
        audio.stop()
    (reason,) = heard.failures
    assert reason.startswith("audio thread failed"), reason
    (record,) = [r for r in caplog.records if r.exc_info is not None]
    assert "stream cam" in record.getMessage()
    assert isinstance(record.exc_info[1], LookupError)  # type: ignore[index]


def test_a_card_of_1_ms_periods_gives_whole_sound() -> None:
    """FFmpeg's ALSA input reads a card's smallest period (about 1 ms on USB audio): 48-sample
    buffers, gathered before they are encoded, give the same unbroken AAC (each frame's pts
    right after the last's), nothing dropped, and the level of each second."""
    heard = Heard()
    levels: list[float] = []
    small = AudioSpec("lavfi", paced_graph(SINE + ":samples_per_frame=48"), 48_000, 128_000)
    audio = capture(heard, spec=small, level=levels.append)
    audio.start()
    try:
        until(lambda: len(heard.aac) >= 100 and levels, what="two seconds of sound")
    finally:
        audio.stop()
    pts = [packet.pts for packet in heard.aac]
    assert pts == list(range(pts[0], pts[0] + 1024 * len(pts), 1024))
    assert heard.dropped == {} and heard.failures == []
    assert -22 < levels[0] < -20  # the stand-in's sine, near -21 dBFS
