"""The live HLS's pure decisions about sound: which tracks its init segment declares, and what an
AAC AudioSpecificConfig says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edged.media.live import (
    AAC_SAMPLE_RATES,
    HEADER_AUDIO_WAIT_SECONDS,
    HeaderStep,
    aac_lc_config,
    header_step,
)


@given(config=st.booleans(), held=st.floats(0, 100))
def test_a_stream_without_sound_declares_video_only_at_once(config: bool, held: float) -> None:
    assert (
        header_step(expects_audio=False, audio_config=config, held_seconds=held) is HeaderStep.VIDEO
    )


@given(held=st.floats(0, 100))
def test_the_sounds_config_known_declares_both_tracks(held: float) -> None:
    assert (
        header_step(expects_audio=True, audio_config=True, held_seconds=held)
        is HeaderStep.VIDEO_AND_AUDIO
    )


def test_the_pictures_wait_for_the_sound_a_bounded_time() -> None:
    def step(held: float) -> HeaderStep:
        return header_step(expects_audio=True, audio_config=False, held_seconds=held)

    assert step(0.0) is HeaderStep.WAIT
    assert step(HEADER_AUDIO_WAIT_SECONDS - 0.01) is HeaderStep.WAIT
    assert step(HEADER_AUDIO_WAIT_SECONDS) is HeaderStep.VIDEO


def test_aac_lc_configs_of_every_rate_and_layout() -> None:
    assert aac_lc_config(bytes.fromhex("1190")) == (48000, 2)  # what FFmpeg's aac writes
    assert aac_lc_config(bytes.fromhex("1188")) == (48000, 1)
    assert aac_lc_config(bytes.fromhex("1210")) == (44100, 2)
    for index, rate in enumerate(AAC_SAMPLE_RATES):
        bits = 2 << 11 | index << 7 | 2 << 3
        assert aac_lc_config(bits.to_bytes(2, "big") + b"\x56\xe5") == (rate, 2)


def test_configs_the_live_muxer_cannot_declare() -> None:
    assert aac_lc_config(b"") is None
    assert aac_lc_config(b"\x11") is None  # cut short
    assert aac_lc_config(bytes.fromhex("2b92")) is None  # HE-AAC (object type 5)
    assert aac_lc_config(bytes.fromhex("1790")) is None  # rate index 15: an explicit rate
    assert aac_lc_config(bytes.fromhex("11b0")) is None  # 5.1
    assert aac_lc_config(bytes.fromhex("1180")) is None  # channels in a program config
