"""A stream's sound source in order (override, paired card, stand-in) and its status line when
its card was pulled."""

from __future__ import annotations

from edged.config import AudioConfig, MediaConfig
from edged.media.audio import AudioSpec, audio_spec, describe_audio

CARD = "hw:CARD=MS2109,DEV=0"
MIC = "hw:CARD=Device,DEV=0"
SINE = "sine=frequency=440:sample_rate=48000"


def test_override_then_paired_card_then_stand_in() -> None:
    media = MediaConfig(audio_stand_in=SINE)
    override = AudioConfig(devices={"cam": MIC})
    assert audio_spec("cam", override, media, CARD) == AudioSpec("alsa", MIC, 48000, 128000)
    assert audio_spec("cam", AudioConfig(), media, CARD) == AudioSpec("alsa", CARD, 48000, 128000)
    assert audio_spec("cam", AudioConfig(), media, None) == AudioSpec(
        "lavfi", f"{SINE},arealtime", 48000, 128000
    )
    assert audio_spec("cam", AudioConfig(), MediaConfig(), None) is None
    assert audio_spec("cam", AudioConfig(enabled=False), media, CARD) is None


def test_a_card_another_stream_names_is_not_taken() -> None:
    claimed = AudioConfig(devices={"test-pattern": CARD})
    assert audio_spec("cam", claimed, MediaConfig(), CARD) is None


def test_the_status_of_a_pulled_card_names_it() -> None:
    spec = AudioSpec("alsa", CARD, 48000, 128000)
    pulled = describe_audio(spec, "audio source failed: [Errno 5] I/O error", pulled=True)
    assert pulled == f"video only: {CARD} unplugged"
    assert describe_audio(spec, "") == f"audio: {CARD}"
    assert describe_audio(None, "", pulled=True) == "no audio device"
