"""The order of a stream's two tracks as the recorder and the live HLS write them (interleave)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from edged.media.interleave import (
    HELD_AUDIO_PACKETS,
    MAX_AUDIO_WAIT_SECONDS,
    Interleaver,
    Item,
    frame_may_go,
)
from edged.media.packets import EncodedPacket

VIDEO = Fraction(1, 90000)
SOUND = Fraction(1, 48000)
FRAME_TICKS = 3000  # 30 fps
AAC_SAMPLES = 1024


def frame(index: int, *, keyframe: bool = False) -> Item:
    pts = index * FRAME_TICKS
    packet = EncodedPacket(b"v", pts, pts, FRAME_TICKS, VIDEO, keyframe, index, 0.0)
    return Item(packet, b"sps")


def sound(index: int, *, dts: int | None = None) -> Item:
    pts = index * AAC_SAMPLES
    packet = EncodedPacket(b"a", pts, pts if dts is None else dts, AAC_SAMPLES, SOUND, True, 0, 0)
    return Item(packet, b"asc", audio=True)


def given_out(tracks: Interleaver, *, waits: bool = True) -> list[Item]:
    out = []
    while (item := tracks.next(waits=waits)) is not None:
        out.append(item)
    return out


def test_a_frame_waits_for_its_sound_which_is_written_before_it() -> None:
    tracks = Interleaver()
    tracks.hold(frame(0, keyframe=True))
    tracks.hold(frame(1))  # at 33.3 ms
    assert given_out(tracks) == []  # no sound yet
    tracks.hold(sound(0))  # 0 to 21.3 ms: reaches frame 0, whose end it starts before
    assert given_out(tracks) == [frame(0, keyframe=True), sound(0)]
    assert tracks.video_end == float(FRAME_TICKS * VIDEO)
    assert tracks.held_frames == 1  # frame 1 (33.3 ms) is not reached yet
    tracks.hold(sound(1))  # 21.3 to 42.7 ms: reaches frame 1, and starts before it
    assert given_out(tracks) == [sound(1), frame(1)]
    tracks.hold(sound(2))  # 42.7 ms: before the video's end (66.7 ms)
    assert given_out(tracks) == [sound(2)]
    tracks.hold(sound(4))  # 85.3 ms: after the video's end, held
    assert given_out(tracks) == [] and tracks.held_frames == 0


def test_a_frame_the_sound_never_reaches_goes_after_the_longest_wait() -> None:
    tracks = Interleaver()
    seconds = round(MAX_AUDIO_WAIT_SECONDS * 30)
    for index in range(seconds):
        tracks.hold(frame(index))
    assert given_out(tracks) == []
    tracks.hold(frame(seconds))  # the first has waited MAX_AUDIO_WAIT_SECONDS of pictures
    assert given_out(tracks) == [frame(0)]
    assert tracks.held_span() == (float(FRAME_TICKS * VIDEO), float(seconds * FRAME_TICKS * VIDEO))


def test_without_waiting_every_frame_goes_and_the_sound_before_its_end() -> None:
    tracks = Interleaver()
    for index in range(3):
        tracks.hold(frame(index))
    tracks.hold(sound(0))
    tracks.hold(sound(10))  # after the pictures: stays
    assert given_out(tracks, waits=False) == [frame(0), sound(0), frame(1), frame(2)]
    assert tracks.held_frames == 0 and tracks.held_span() is None


def test_sound_whose_timeline_went_back_is_skipped_and_counted() -> None:
    tracks = Interleaver()
    tracks.hold(sound(0))
    tracks.hold(sound(1))
    tracks.hold(sound(2, dts=0))  # its clock restarted: overlaps what was written
    tracks.hold(frame(0))
    tracks.hold(frame(1))
    assert given_out(tracks) == [frame(0), sound(0), sound(1), frame(1)]
    assert tracks.dropped_sound == 1


def test_held_sound_is_bounded_and_what_it_lets_go_is_counted() -> None:
    tracks = Interleaver()
    for index in range(HELD_AUDIO_PACKETS + 3):
        tracks.hold(sound(index))
    assert tracks.dropped_sound == 3
    tracks.hold(frame(2))  # at 66.7 ms: sound 3 (64 ms) starts before it
    assert given_out(tracks, waits=False) == [sound(3), frame(2), sound(4)]  # 3: the oldest kept


def test_sound_from_before_the_first_frame_is_let_go_uncounted() -> None:
    tracks = Interleaver()
    for index in range(5):
        tracks.hold(sound(index))
    tracks.hold(frame(2))  # at 66.7 ms: sound 0 to 3 start before it
    tracks.drop_sound_before(float(2 * FRAME_TICKS * VIDEO))
    assert given_out(tracks) == [frame(2), sound(4)]  # sound 4 (85.3 ms) before its end
    assert tracks.dropped_sound == 0


@given(st.lists(st.booleans(), max_size=120), st.booleans())
def test_the_tracks_come_out_in_order_however_they_arrive(
    arrivals: list[bool], waits: bool
) -> None:
    """Frames and sound in their own orders, mixed as they come: each comes out once, in its
    order, and no sound is given before the pictures have (nearly) reached it."""
    tracks = Interleaver()
    frames, sounds, out = 0, 0, []
    for is_sound in arrivals:
        if is_sound:
            tracks.hold(sound(sounds))
            sounds += 1
        else:
            tracks.hold(frame(frames))
            frames += 1
        while (item := tracks.next(waits=waits)) is not None:
            if item.audio:
                next_frame = [i for i in range(frames) if frame(i) not in out]
                front = frame(next_frame[0]).packet.seconds if next_frame else float("-inf")
                assert item.packet.seconds < max(tracks.video_end, front)
            out.append(item)
    out += given_out(tracks, waits=False)
    assert [item for item in out if not item.audio] == [frame(i) for i in range(frames)]
    given_sound = [item for item in out if item.audio]
    assert given_sound == [sound(i) for i in range(len(given_sound))]


def test_frame_may_go_waits_at_most_the_longest_wait() -> None:
    assert not frame_may_go(2.0, 2.0, 1.95, waits=True)
    assert frame_may_go(2.0, 2.0 + MAX_AUDIO_WAIT_SECONDS, float("-inf"), waits=True)
    assert frame_may_go(2.0, 2.0, float("-inf"), waits=False)
