"""The first fragment split: same samples, same timing, a first fragment of one keyframe."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path
from typing import Any

import av
import pytest

from edged.cache.faststart import parse_traf, split_first_fragment, video_track_id
from edged.cache.prepare import head_size, prepare
from edged.media.mp4 import MOVFLAGS, top_level_boxes
from tests.clips import make_clip


def clip(path: Path, b_frames: int, audio: bool, fragmented: bool = True) -> Path:
    """Two seconds of 320x240 H.264 with a 1 s GOP, optionally B-frames and AAC."""
    return make_clip(
        path,
        fmt="mp4",
        codec_options={"g": "30", "bf": str(b_frames)},
        container_options={"movflags": MOVFLAGS} if fragmented else None,
        audio=audio,
    )


def packets(path: Path) -> list[tuple[Any, ...]]:
    with av.open(str(path)) as container:
        return [
            (p.stream.index, p.pts, p.dts, p.is_keyframe, hashlib.md5(bytes(p)).hexdigest())
            for p in container.demux()
            if p.size
        ]


def trafs(moof: bytes) -> list[bytes]:
    """The traf boxes, headers included, of a moof's payload."""
    boxes = top_level_boxes(io.BytesIO(moof), len(moof))
    return [moof[offset : offset + length] for kind, offset, length in boxes if kind == b"traf"]


def fragments(path: Path) -> list[tuple[int, list[int]]]:
    """(sequence number, samples per traf) of each moof."""
    data = path.read_bytes()
    found = []
    for kind, offset, length in top_level_boxes(io.BytesIO(data), len(data)):
        if kind == b"moof":
            moof = data[offset + 8 : offset + length]
            sequence = struct.unpack_from(">I", moof, 12)[0]
            found.append((sequence, [len(parse_traf(t[8:]).samples) for t in trafs(moof)]))
    return found


@pytest.mark.parametrize(("b_frames", "audio"), [(0, False), (2, False), (0, True), (2, True)])
def test_split_keeps_every_sample_and_cuts_a_one_frame_first_fragment(
    tmp_path: Path, b_frames: int, audio: bool
) -> None:
    path = clip(tmp_path / "clip.mp4", b_frames, audio)
    before, gop_head = packets(path), head_size(path)
    assert split_first_fragment(path)
    assert packets(path) == before  # same bytes, same pts/dts, same keyframes, per stream
    layout = fragments(path)
    assert layout[0][1] == [1]  # the first fragment is the keyframe alone
    assert [sequence for sequence, _ in layout] == list(range(1, len(layout) + 1))
    head = path.read_bytes()[: head_size(path)]
    assert head_size(path) < gop_head / 5
    container: Any
    with av.open(io.BytesIO(head)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height, frame.key_frame) == (320, 240, True)


def test_prepare_writes_the_short_first_fragment(tmp_path: Path) -> None:
    source = clip(tmp_path / "source.mp4", 2, True, fragmented=False)
    prepared = prepare(source, tmp_path / "ready.mp4")
    assert fragments(tmp_path / "ready.mp4")[0][1] == [1]
    assert prepared.head_size == head_size(tmp_path / "ready.mp4")
    # the remux moves the timeline to start at zero; the samples themselves are the same
    same = [(p[0], p[3], p[4]) for p in packets(source)]
    assert sorted(same) == sorted((p[0], p[3], p[4]) for p in packets(tmp_path / "ready.mp4"))


def test_files_it_does_not_know_are_left_as_they_are(tmp_path: Path) -> None:
    plain = clip(tmp_path / "plain.mp4", 0, False, fragmented=False)  # moov at the end
    one_frame = tmp_path / "one.mp4"
    with av.open(str(one_frame), "w", format="mp4", options={"movflags": MOVFLAGS}) as out:
        video: Any = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        out.mux(video.encode(av.VideoFrame(64, 64, "yuv420p")))
        out.mux(video.encode(None))
    for path in (plain, one_frame, tmp_path / "empty.mp4"):
        path.touch()
        before = path.read_bytes()
        assert not split_first_fragment(path)
        assert path.read_bytes() == before


def test_traf_round_trips_and_video_track_is_found(tmp_path: Path) -> None:
    path = clip(tmp_path / "clip.mp4", 2, True)
    data = path.read_bytes()
    boxes = top_level_boxes(io.BytesIO(data), len(data))
    moov = next(data[o + 8 : o + n] for kind, o, n in boxes if kind == b"moov")
    assert video_track_id(moov) == 1
    moof = next(data[o + 8 : o + n] for kind, o, n in boxes if kind == b"moof")
    assert len(trafs(moof)) == 2  # video and audio
    for traf in trafs(moof):
        assert parse_traf(traf[8:]).traf() == traf
