"""MP4 box structure: the one box header reader, and what edged asks of it (how much of a file
is whole, the whole boxes of a muxer's output so far, whether metadata comes first). Pure: works
on box headers."""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

HEADER = 8
LARGE_HEADER = 16  # with a 64-bit length
# What every fMP4 edged writes asks of FFmpeg's muxer: metadata first, a fragment per keyframe,
# offsets from each fragment (recordings, fast-start clips; live HLS adds +cmaf).
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


class BoxHeader(NamedTuple):
    kind: bytes
    length: int  # of the whole box, header included; 0: the box runs to the end of the file
    size: int  # of the header: HEADER, or LARGE_HEADER with a 64-bit length

    @property
    def valid(self) -> bool:
        """Whether the length can be a box's (0, to the end of the file, is left to the caller)."""
        return self.length == 0 or self.length >= self.size


def box_header(data: bytes | bytearray, offset: int = 0) -> BoxHeader | None:
    """The header of the box at `offset` of `data`; None while its bytes are not all there."""
    if offset + HEADER > len(data):
        return None
    length, kind = struct.unpack_from(">I4s", data, offset)
    if length != 1:
        return BoxHeader(kind, length, HEADER)
    if offset + LARGE_HEADER > len(data):
        return None
    return BoxHeader(kind, struct.unpack_from(">Q", data, offset + HEADER)[0], LARGE_HEADER)


def top_level_boxes(handle: BinaryIO, size: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, length) of the complete top-level boxes, stopping at the first torn one."""
    boxes = []
    offset = 0
    while offset + HEADER <= size:
        handle.seek(offset)
        header = box_header(handle.read(LARGE_HEADER))
        if header is None or not header.valid:
            break
        length = header.length or size - offset
        if offset + length > size:
            break
        boxes.append((header.kind, offset, length))
        offset += length
    return boxes


def take_whole_boxes(buffer: bytearray) -> list[tuple[bytes, bytes]]:
    """Remove and return (type, bytes) of the whole top-level boxes at the start of `buffer`, a
    muxer's output so far (a box running to the end of the file is whole only at the end)."""
    boxes = []
    while (header := box_header(buffer)) is not None:
        if not header.valid or header.length == 0 or len(buffer) < header.length:
            break
        boxes.append((header.kind, bytes(buffer[: header.length])))
        del buffer[: header.length]
    return boxes


def metadata_first(head: bytes) -> bool | None:
    """True when `moov` comes before any `mdat`, False when `mdat` comes first, None when the
    first bytes of a file, `head`, do not tell yet."""
    offset = 0
    while (header := box_header(head, offset)) is not None:
        if header.kind == b"moov":
            return True
        if header.kind == b"mdat":
            return False
        if not header.valid or header.length == 0:
            return False  # not an MP4 box structure, or no moov: nothing to stream early
        offset += header.length
    return None


def whole_prefix(handle: BinaryIO, size: int) -> tuple[int, int]:
    """(bytes that form a playable fragmented MP4, complete fragments) of a possibly torn file.

    Playable means ftyp + moov and then only complete moof+mdat pairs: a fragment whose media
    data was cut off by a crash is dropped with everything after it.
    """
    boxes = top_level_boxes(handle, size)
    kinds = [kind for kind, _, _ in boxes]
    if b"moov" not in kinds:
        return 0, 0
    end = 0
    fragments = 0
    index = 0
    while index < len(boxes):
        kind, offset, length = boxes[index]
        if kind == b"moof":
            if index + 1 < len(boxes) and boxes[index + 1][0] == b"mdat":
                _, mdat_offset, mdat_length = boxes[index + 1]
                end = mdat_offset + mdat_length
                fragments += 1
                index += 2
                continue
            break
        if kind in (b"ftyp", b"moov", b"styp", b"sidx", b"free", b"mfra", b"uuid"):
            end = offset + length
        index += 1
    return end, fragments
