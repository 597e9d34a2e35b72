"""One JPEG encoder for every poster: a clip's first frame and a live keyframe alike (#13)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av

from edged.cache.prepare import prepare
from edged.media.poster import frame_jpeg, keyframe_jpeg
from tests.clips import make_clip


def first_frame_and_keyframe(path: Path) -> tuple[Any, bytes]:
    """The first decoded frame of a raw H.264 file and its first packet (SPS/PPS in front)."""
    with av.open(str(path)) as container:
        packet = next(p for p in container.demux(video=0) if p.size)
    with av.open(str(path)) as container:
        frame = next(iter(container.decode(video=0)))
    return frame, bytes(packet)


def picture(jpeg: bytes) -> tuple[str, int, int]:
    with av.open(io.BytesIO(jpeg), "r", format="image2pipe") as container:
        frame = next(iter(container.decode(video=0)))
        return container.streams.video[0].codec_context.name, frame.width, frame.height


def test_a_frame_and_its_keyframe_give_the_same_jpeg(tmp_path: Path) -> None:
    raw = make_clip(tmp_path / "clip.h264", seconds=0.5, fmt="h264")
    frame, keyframe = first_frame_and_keyframe(raw)
    jpeg = frame_jpeg(frame)
    assert picture(jpeg) == ("mjpeg", 320, 240)
    assert keyframe_jpeg(keyframe) == jpeg


def test_a_prepared_clips_poster_is_its_first_frame_through_the_same_encoder(
    tmp_path: Path,
) -> None:
    source = make_clip(tmp_path / "clip.mp4", seconds=1.0, fmt="mp4")
    with av.open(str(source)) as container:
        first = next(iter(container.decode(video=0)))
    prepared = prepare(source, tmp_path / "fast.mp4")
    assert prepared.poster == frame_jpeg(first)
