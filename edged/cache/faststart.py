"""A first fragment of one keyframe: split the first moof+mdat of a fragmented MP4 in two.

FFmpeg's mov muxer cuts fragments at keyframes, so a clip's first fragment is its whole first
GOP (one to several seconds, up to megabytes at 1080p). A player that waits for whole fragments,
and the RAM head of a pinned clip, then hold a GOP where one frame would do. This rewrites the
first fragment as two: the first video sample alone, then the rest of that fragment (the other
video samples and every other track's samples of it, untouched). Later fragments are copied,
their sequence numbers moved up by one.

Only the layout FFmpeg writes with `default_base_moof` is handled (one `trun` per `traf`, data
offsets from the `moof`, a `tfdt`); anything else is left as it is, which is still a valid file.
Pure on bytes, except `split_first_fragment`, which rewrites a file.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from edged.media.mp4 import top_level_boxes

BASE_DATA_OFFSET = 0x1
DEFAULT_DURATION = 0x8
DEFAULT_SIZE = 0x10
DEFAULT_BASE_IS_MOOF = 0x20000

DATA_OFFSET = 0x1
FIRST_SAMPLE_FLAGS = 0x4
SAMPLE_DURATION = 0x100
SAMPLE_SIZE = 0x200
SAMPLE_FLAGS = 0x400
SAMPLE_CTO = 0x800
ENTRY_FIELDS = (SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTO)


class Unsplittable(ValueError):
    """The fragment is not laid out as expected; the file stays as it is."""


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of the boxes in `data`, which they must fill exactly."""
    boxes = top_level_boxes(io.BytesIO(data), len(data))
    if (boxes[-1][1] + boxes[-1][2] if boxes else 0) != len(data):
        raise Unsplittable("a torn box")
    if any(data[offset : offset + 4] == b"\0\0\0\1" for _, offset, _ in boxes):
        raise Unsplittable("a 64-bit box size inside a moov or moof")
    return [(kind, data[offset + 8 : offset + length]) for kind, offset, length in boxes]


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _only(boxes: list[tuple[bytes, bytes]], kind: bytes) -> bytes:
    found = [payload for k, payload in boxes if k == kind]
    if len(found) != 1:
        raise Unsplittable(f"{len(found)} {kind.decode()} boxes where one was expected")
    return found[0]


def video_track_id(moov: bytes) -> int:
    """The track_ID of the first `vide` track in a moov payload."""
    for kind, trak in _children(moov):
        if kind != b"trak":
            continue
        parts = _children(trak)
        tkhd = _only(parts, b"tkhd")
        hdlr = _only(_children(_only(parts, b"mdia")), b"hdlr")
        if hdlr[8:12] == b"vide":
            at = 20 if tkhd[0] == 1 else 12
            return int(struct.unpack_from(">I", tkhd, at)[0])
    raise Unsplittable("no video track")


@dataclass(frozen=True)
class Run:
    """One traf: its tfhd as is, its tfdt time, and its trun's samples."""

    track_id: int
    tfhd: bytes
    tfdt_version: int
    base_time: int
    trun_version: int
    trun_flags: int
    data_offset: int  # from the start of the moof
    first_flags: int | None
    samples: tuple[tuple[int, ...], ...]  # per sample, the fields the trun flags name
    default_duration: int | None
    default_size: int | None

    def field(self, index: int, flag: int, default: int | None) -> int:
        if self.trun_flags & flag:
            present = [f for f in ENTRY_FIELDS if self.trun_flags & f]
            return self.samples[index][present.index(flag)]
        if default is None:
            raise Unsplittable("a sample size or duration is in neither trun nor tfhd")
        return default

    def duration(self, index: int) -> int:
        return self.field(index, SAMPLE_DURATION, self.default_duration)

    def size(self, index: int) -> int:
        return self.field(index, SAMPLE_SIZE, self.default_size)

    def traf(self) -> bytes:
        tfdt = (
            struct.pack(">B3xQ", 1, self.base_time)
            if self.tfdt_version == 1
            else struct.pack(">B3xI", 0, self.base_time)
        )
        flags = self.trun_flags | DATA_OFFSET
        trun = struct.pack(">I", (self.trun_version << 24) | flags)
        trun += struct.pack(">Ii", len(self.samples), self.data_offset)
        if flags & FIRST_SAMPLE_FLAGS:
            trun += struct.pack(">I", self.first_flags or 0)
        signed = self.trun_version == 1
        for sample in self.samples:
            for value, flag in zip(sample, [f for f in ENTRY_FIELDS if flags & f], strict=True):
                trun += struct.pack(">i" if flag == SAMPLE_CTO and signed else ">I", value)
        return _box(b"traf", _box(b"tfhd", self.tfhd) + _box(b"tfdt", tfdt) + _box(b"trun", trun))


def parse_traf(payload: bytes) -> Run:
    boxes = _children(payload)
    tfhd = _only(boxes, b"tfhd")
    tfdt = _only(boxes, b"tfdt")
    trun = _only(boxes, b"trun")
    tfhd_flags = int.from_bytes(tfhd[1:4], "big")
    if tfhd_flags & BASE_DATA_OFFSET or not tfhd_flags & DEFAULT_BASE_IS_MOOF:
        raise Unsplittable("data offsets are not counted from the moof")
    track_id = int(struct.unpack_from(">I", tfhd, 4)[0])
    at = 8
    optional: dict[int, int] = {}
    for flag, width in ((0x1, 8), (0x2, 4), (DEFAULT_DURATION, 4), (DEFAULT_SIZE, 4), (0x20, 4)):
        if tfhd_flags & flag:
            optional[flag] = int.from_bytes(tfhd[at : at + width], "big")
            at += width
    base_time = int.from_bytes(tfdt[4:12] if tfdt[0] == 1 else tfdt[4:8], "big")
    trun_flags = int.from_bytes(trun[1:4], "big")
    if not trun_flags & DATA_OFFSET:
        raise Unsplittable("the trun has no data offset")
    count, data_offset = struct.unpack_from(">Ii", trun, 4)
    at = 12
    first_flags = None
    if trun_flags & FIRST_SAMPLE_FLAGS:
        first_flags = int(struct.unpack_from(">I", trun, at)[0])
        at += 4
    fields = [f for f in ENTRY_FIELDS if trun_flags & f]
    signed = trun[0] == 1
    samples = []
    for _ in range(count):
        sample = []
        for flag in fields:
            sample.append(
                struct.unpack_from(">i" if flag == SAMPLE_CTO and signed else ">I", trun, at)[0]
            )
            at += 4
        samples.append(tuple(sample))
    return Run(
        track_id=track_id,
        tfhd=tfhd,
        tfdt_version=tfdt[0],
        base_time=base_time,
        trun_version=trun[0],
        trun_flags=trun_flags,
        data_offset=data_offset,
        first_flags=first_flags,
        samples=tuple(samples),
        default_duration=optional.get(DEFAULT_DURATION),
        default_size=optional.get(DEFAULT_SIZE),
    )


def _moof(sequence: int, runs: list[Run]) -> bytes:
    mfhd = _box(b"mfhd", struct.pack(">4xI", sequence))
    return _box(b"moof", mfhd + b"".join(run.traf() for run in runs))


def _fragment(sequence: int, runs: list[Run], offsets: list[int], mdat: bytes) -> bytes:
    """moof+mdat, each run's data offset pointing at its `offsets` place in the mdat."""
    size = len(_moof(sequence, runs))  # data offsets have a fixed width
    placed = [
        replace(run, data_offset=size + 8 + offset)
        for run, offset in zip(runs, offsets, strict=True)
    ]
    return _moof(sequence, placed) + _box(b"mdat", mdat)


def split(moof: bytes, mdat: bytes, video_track: int) -> tuple[bytes, bytes]:
    """Two fragments (moof+mdat each) from the payloads of one moof and its mdat.

    The first holds the video track's first sample; the second everything else, the mdat's
    bytes in their order less that sample's.
    """
    boxes = _children(moof)
    sequence = int(struct.unpack_from(">I", _only(boxes, b"mfhd"), 4)[0])
    runs = [parse_traf(payload) for kind, payload in boxes if kind == b"traf"]
    videos = [run for run in runs if run.track_id == video_track]
    if len(videos) != 1 or len(videos[0].samples) < 2:
        raise Unsplittable("the first fragment has no video run of two samples or more")
    video = videos[0]
    mdat_start = 8 + len(moof) + 8  # where the mdat's payload starts, counted from the moof
    places = [run.data_offset - mdat_start for run in runs]
    for run, place in zip(runs, places, strict=True):
        if place < 0 or place + sum(run.size(i) for i in range(len(run.samples))) > len(mdat):
            raise Unsplittable("a run's data lies outside the mdat")
    first_at = video.data_offset - mdat_start
    first_size = video.size(0)
    keyframe = mdat[first_at : first_at + first_size]
    rest = mdat[:first_at] + mdat[first_at + first_size :]

    first = _fragment(sequence, [replace(video, samples=video.samples[:1])], [0], keyframe)
    later_video = replace(
        video,
        samples=video.samples[1:],
        base_time=video.base_time + video.duration(0),
        trun_flags=video.trun_flags & ~FIRST_SAMPLE_FLAGS,
        first_flags=None,
    )
    later = [later_video if run is video else run for run in runs]
    # bytes after the keyframe move down by its size; the video run's rest starts where it was
    moved = [place - first_size if place > first_at else place for place in places]
    return first, _fragment(sequence + 1, later, moved, rest)


def split_first_fragment(path: Path) -> bool:
    """Rewrite `path` so its first fragment is one keyframe; False if it was left as it is."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        boxes = top_level_boxes(handle, size)
        kinds = [kind for kind, _, _ in boxes]
        if b"moov" not in kinds or b"moof" not in kinds:
            return False
        first = kinds.index(b"moof")
        if first + 1 >= len(boxes) or kinds[first + 1] != b"mdat":
            return False
        _, moov_at, moov_length = boxes[kinds.index(b"moov")]
        _, moof_at, moof_length = boxes[first]
        mdat_length = boxes[first + 1][2]
        handle.seek(moov_at)
        moov = handle.read(moov_length)
        handle.seek(moof_at)
        moof = handle.read(moof_length)
        mdat = handle.read(mdat_length)
        if any(box[:4] == b"\0\0\0\1" for box in (moov, moof, mdat)):
            return False  # 64-bit box sizes: not what the muxer writes for a first fragment
        moov, moof, mdat = moov[8:], moof[8:], mdat[8:]
        try:
            fragments = split(moof, mdat, video_track_id(moov))
        except (Unsplittable, struct.error):
            return False
        partial = path.with_name(path.name + ".split")
        with partial.open("wb") as out:
            handle.seek(0)
            out.write(handle.read(moof_at))
            out.write(fragments[0])
            out.write(fragments[1])
            for kind, offset, length in boxes[first + 2 :]:  # one box (at most a GOP) at a time
                handle.seek(offset)
                box = bytearray(handle.read(length))
                if kind == b"moof" and box[12:16] == b"mfhd":
                    box[20:24] = struct.pack(">I", struct.unpack_from(">I", box, 20)[0] + 1)
                out.write(box)
            shutil.copyfileobj(handle, out, 1 << 20)  # a torn tail, if any, stays as it was
    os.replace(partial, path)
    return True
