"""The pure parts of a stream's sound: its config, its source, ALSA's config path, the
timeline that keeps the sample count on the video's clock, its level, and Opus' clock."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged import config
from edged.config import AudioConfig, ConfigError, MediaConfig
from edged.media.audio import (
    ALSA_CONFIG_PATH,
    DRIFT_TOLERANCE_SECONDS,
    DRIFT_WINDOW_SECONDS,
    AudioSpec,
    AudioTimeline,
    Stamp,
    audio_spec,
    correction,
    describe_audio,
    ensure_alsa_config,
    paced_graph,
)
from edged.media.interleave import MAX_AUDIO_WAIT_SECONDS, frame_may_go
from edged.media.level import FLOOR_DBFS, LevelMeter, dbfs, peak
from edged.media.opus import opus_pts

RATE = 48_000
FRAME = 1024
SINE = "sine=frequency=440:sample_rate=48000"


# -- config ------------------------------------------------------------------------------------


def test_audio_defaults() -> None:
    loaded = config.from_mapping({})
    assert loaded.audio == AudioConfig(True, 48000, 128000, {})
    assert loaded.media.audio_stand_in == ""


def test_audio_values_are_read() -> None:
    loaded = config.from_mapping(
        {
            "audio": {
                "enabled": False,
                "sample_rate": 44100,
                "bitrate": 96000,
                "devices": {"cam-1": "hw:CARD=MS2109,DEV=0", "mic": "plughw:1,0"},
            },
            "media": {"audio_stand_in": SINE},
        }
    )
    assert loaded.audio.devices == {"cam-1": "hw:CARD=MS2109,DEV=0", "mic": "plughw:1,0"}
    assert (loaded.audio.enabled, loaded.audio.sample_rate, loaded.audio.bitrate) == (
        False,
        44100,
        96000,
    )
    assert loaded.media.audio_stand_in == SINE
    assert config.to_mapping(loaded)["audio"]["devices"] == loaded.audio.devices


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ({"sample_rate": 4000}, "audio.sample_rate = 4000: must be at least 8000"),
        ({"bitrate": "fast"}, "audio.bitrate = 'fast': must be an integer"),
        ({"devices": ["hw:0"]}, "audio.devices = ['hw:0']: must be a table of strings"),
        ({"devices": {"cam": 3}}, "audio.devices = {'cam': 3}: must be a table of strings"),
        ({"devices": {"cam": "default"}}, "audio.devices.cam = 'default': not allowed"),
        ({"devices": {"cam": "pulse"}}, "audio.devices.cam = 'pulse': not allowed"),
        ({"devices": {"../x": "hw:0"}}, "audio.devices.../x: not a stream name"),
        ({"level": 1}, "audio.level: unknown key"),
    ],
)
def test_bad_audio_values_name_the_key(audio: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        config.from_mapping({"audio": audio})


def test_audio_config_stays_hashable_and_frozen() -> None:
    audio = AudioConfig(devices={"cam": "hw:0"})
    assert hash(audio) == hash(AudioConfig())
    with pytest.raises(AttributeError):
        audio.enabled = False  # type: ignore[misc]


# -- ALSA's config path ------------------------------------------------------------------------


def test_alsa_config_path_is_set_when_unset() -> None:
    environ: dict[str, str] = {"PATH": "/bin"}
    assert ensure_alsa_config(environ) is True
    assert environ == {"PATH": "/bin", "ALSA_CONFIG_PATH": ALSA_CONFIG_PATH}


@pytest.mark.parametrize(("value", "kept"), [("/etc/my-alsa.conf", True), ("", False)])
def test_alsa_config_path_set_by_someone_is_kept(value: str, kept: bool) -> None:
    environ = {"ALSA_CONFIG_PATH": value}
    assert ensure_alsa_config(environ) is not kept
    assert environ["ALSA_CONFIG_PATH"] == (value if kept else ALSA_CONFIG_PATH)


# -- where the sound comes from ----------------------------------------------------------------


def test_a_configured_device_wins_over_the_stand_in() -> None:
    audio = AudioConfig(devices={"cam": "hw:CARD=MS2109,DEV=0"})
    media = MediaConfig(audio_stand_in=SINE)
    assert audio_spec("cam", audio, media) == AudioSpec(
        "alsa", "hw:CARD=MS2109,DEV=0", RATE, 128000
    )
    assert audio_spec("other", audio, media) == AudioSpec(
        "lavfi", f"{SINE},arealtime", RATE, 128000
    )


def test_no_sound_when_disabled_or_nothing_known() -> None:
    media = MediaConfig(audio_stand_in=SINE)
    assert audio_spec("cam", AudioConfig(enabled=False, devices={"cam": "hw:0"}), media) is None
    assert audio_spec("cam", AudioConfig(), MediaConfig()) is None


def test_a_paced_graph_is_not_paced_twice() -> None:
    assert paced_graph(SINE) == f"{SINE},arealtime"
    assert paced_graph(f"{SINE},arealtime") == f"{SINE},arealtime"


def test_the_status_line() -> None:
    spec = AudioSpec("alsa", "hw:CARD=MS2109,DEV=0", RATE, 128000)
    assert describe_audio(None, "") == "no audio device"
    assert describe_audio(spec, "") == "audio: hw:CARD=MS2109,DEV=0"
    assert describe_audio(spec, "device busy") == "video only: device busy"
    assert AudioSpec("lavfi", SINE, RATE, 1).label == f"lavfi:{SINE}"


# -- the timeline ------------------------------------------------------------------------------


def run(timeline: AudioTimeline, ends: list[float], samples: int = FRAME) -> list[Stamp]:
    return [timeline.place(end, samples) for end in ends]


def test_the_first_buffer_is_placed_by_its_capture_time() -> None:
    timeline = AudioTimeline(RATE)
    (first,) = run(timeline, [1.0])
    assert first == Stamp(RATE - FRAME, silence=RATE - FRAME, restart=True)  # from the video's 0
    assert timeline.next_pts == RATE


def test_a_first_buffer_that_came_late_is_set_right_within_the_first_window() -> None:
    """The first buffer came 100 ms late (the box was busy starting): the start was placed 100 ms
    late, and samples are dropped, before the timeline settles, to put it back."""
    timeline = AudioTimeline(RATE)
    first = timeline.place(FRAME / RATE + 0.1, FRAME)
    assert not timeline.settled
    held = first.silence + FRAME  # nothing is encoded before the timeline settles
    stamps = []
    for end in on_time(1, 60):
        stamps.append(timeline.place(end, FRAME, held if not timeline.settled else 0))
        held += FRAME - stamps[-1].drop
    settled_at = next(i for i in range(1, 61) if (i + 1) * FRAME >= DRIFT_WINDOW_SECONDS * RATE)
    dropped = sum(stamp.drop for stamp in stamps)
    assert timeline.settled
    assert first.silence == round(0.1 * RATE)
    assert dropped == pytest.approx(0.1 * RATE, abs=1)
    assert sum(stamp.drop for stamp in stamps[: settled_at + 5]) == dropped


def test_a_source_that_starts_late_is_not_padded_from_zero() -> None:
    timeline = AudioTimeline(RATE)
    (first,) = run(timeline, [10.0])
    assert first == Stamp(10 * RATE - FRAME, restart=True)


def test_a_steady_source_is_counted_not_clocked() -> None:
    """Capture times late by up to 30 ms each (the scheduler) move no sample."""
    timeline = AudioTimeline(RATE)
    late = [0.0, 0.03, 0.01, 0.025, 0.0, 0.02]
    ends = [(index + 1) * FRAME / RATE + late[index % len(late)] for index in range(500)]
    stamps = run(timeline, ends)
    assert [stamp.start for stamp in stamps] == [index * FRAME for index in range(500)]
    assert all(not (s.silence or s.drop or s.missing) for s in stamps)


def on_time(first: int, count: int, late: float = 0.0) -> list[float]:
    """Capture times of `count` buffers from buffer number `first`, each `late` seconds late."""
    return [(index + 1) * FRAME / RATE + late for index in range(first, first + count)]


def test_a_gap_is_filled_with_silence_and_counted() -> None:
    """Half a second the device never delivered: once the buffers after it have all come that
    late for the window, the count is moved on by the gap, in silence."""
    timeline = AudioTimeline(RATE)
    run(timeline, on_time(0, 50))
    stamps = run(timeline, on_time(50, 50, late=0.5))
    filled = [stamp for stamp in stamps if stamp.silence]
    assert len(filled) == 1
    assert filled[0].silence == filled[0].missing
    assert filled[0].silence == pytest.approx(0.5 * RATE, abs=1)
    assert stamps.index(filled[0]) * FRAME <= DRIFT_WINDOW_SECONDS * RATE + FRAME
    assert timeline.next_pts == pytest.approx(100 * FRAME + 0.5 * RATE, abs=1)


def test_a_stall_of_the_capture_thread_is_not_a_gap() -> None:
    """The thread was held 0.3 s: the device kept the samples and they come in a burst."""
    timeline = AudioTimeline(RATE)
    run(timeline, on_time(0, 50))
    burst_at = on_time(50, 1, late=0.3)[0]
    stamps = run(timeline, [burst_at] * 14)  # the 0.3 s the device held, all at once
    stamps += run(timeline, on_time(64, 100))
    assert all(not (s.silence or s.drop or s.missing) for s in stamps)
    assert timeline.next_pts == 164 * FRAME


def test_a_long_gap_restarts_the_track() -> None:
    timeline = AudioTimeline(RATE)
    run(timeline, on_time(0, 50))
    stamps = run(timeline, on_time(50, 50, late=30.0))
    (restart,) = [stamp for stamp in stamps if stamp.restart]
    assert restart.silence == 0
    assert restart.missing == pytest.approx(30 * RATE, abs=1)
    assert timeline.next_pts == pytest.approx(100 * FRAME + 30 * RATE, abs=1)


def test_a_fast_device_is_trimmed_back_to_the_clock() -> None:
    """A sound card whose crystal runs 1 % fast: samples are dropped, in steps, to stay in sync."""
    timeline = AudioTimeline(RATE)
    seconds = 60
    count = round(seconds * RATE * 1.01 / FRAME)
    stamps = run(timeline, [(index + 1) * FRAME / (RATE * 1.01) for index in range(count)])
    dropped = sum(stamp.drop for stamp in stamps)
    assert dropped == pytest.approx(seconds * RATE * 0.01, rel=0.1)
    assert all(stamp.missing == 0 for stamp in stamps)
    assert timeline.next_pts is not None
    drift = timeline.next_pts / RATE - seconds
    assert abs(drift) <= DRIFT_TOLERANCE_SECONDS + FRAME / RATE


@given(st.floats(min_value=-0.02, max_value=0.02), st.integers(min_value=1, max_value=RATE))
def test_within_tolerance_nothing_is_corrected(lateness: float, rate: int) -> None:
    assert correction(lateness, rate) == (0, 0)


@given(st.floats(min_value=0.05, max_value=100.0))
def test_corrections_undo_the_lateness(lateness: float) -> None:
    assert correction(lateness, RATE) == (round(lateness * RATE), 0)
    assert correction(-lateness, RATE) == (0, round(lateness * RATE))


# -- the recorder's order of the two tracks ---------------------------------------------------


def test_a_frame_waits_for_the_sound_to_reach_it() -> None:
    assert not frame_may_go(2.0, 2.0, 1.95, waits=True)
    assert frame_may_go(2.0, 2.0, 2.0, waits=True)
    assert frame_may_go(2.0, 2.0, 2.02, waits=True)


def test_a_frame_waits_no_longer_than_the_bound_nor_without_sound() -> None:
    assert frame_may_go(2.0, 2.0 + MAX_AUDIO_WAIT_SECONDS, float("-inf"), waits=True)
    assert not frame_may_go(2.0, 2.0 + MAX_AUDIO_WAIT_SECONDS / 2, float("-inf"), waits=True)
    assert frame_may_go(2.0, 2.0, float("-inf"), waits=False)


# -- the level: the peak of each second, in dBFS ---------------------------------------------


def floats(values: list[float]) -> bytes:
    return struct.pack(f"={len(values)}f", *values)


SAMPLES = st.lists(
    st.floats(min_value=-4.0, max_value=4.0, allow_subnormal=False, width=32), max_size=300
)


@given(SAMPLES)
def test_the_peak_is_the_largest_magnitude_to_8_bits_of_mantissa(values: list[float]) -> None:
    true = max((abs(value) for value in values), default=0.0)
    found = peak(floats(values))
    assert found <= true
    assert found >= true * (1 - 2**-7)  # at most 0.07 dB under


def test_the_peak_of_known_buffers() -> None:
    assert peak(b"") == 0.0
    assert peak(floats([0.0] * 1024)) == 0.0
    assert peak(floats([0.0, -0.5, 0.25])) == 0.5
    assert peak(floats([1.0, -1.0])) == 1.0
    assert peak(floats([0.125]) + b"\x00\x00") == 0.125  # a torn last sample is left out
    assert peak(memoryview(floats([0.0, 0.75]))) == 0.75


def test_dbfs_and_its_floor() -> None:
    assert dbfs(1.0) == 0.0
    assert dbfs(0.125) == pytest.approx(-18.06, abs=0.01)
    assert dbfs(0.5) == pytest.approx(-6.02, abs=0.01)
    assert dbfs(0.0) == FLOOR_DBFS == -120.0
    assert dbfs(1e-7) == FLOOR_DBFS  # quieter than the floor
    assert dbfs(math.nan) == FLOOR_DBFS
    assert dbfs(2.0) > 0  # an over is shown as one


def test_the_meter_gives_the_peak_of_each_whole_second() -> None:
    meter = LevelMeter(RATE)
    readings = [meter.add(FRAME, 0.5 if index == 3 else 0.01) for index in range(47)]
    assert readings[:-1] == [None] * 46
    assert readings[-1] == pytest.approx(-6.02, abs=0.01)  # 47 * 1024 >= 48000
    again = [meter.add(FRAME, 0.0) for _ in range(47)]
    assert again[-1] == FLOOR_DBFS and again[:-1] == [None] * 46  # the last second alone


def test_opus_pts_are_counted_at_48_khz() -> None:
    assert opus_pts(96_000, 48_000) == 96_000
    assert opus_pts(44_100, 44_100) == 48_000
    assert opus_pts(16_000, 32_000) == 24_000
