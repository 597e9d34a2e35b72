"""Fragmented MP4 structure: how much of a file is whole. Pure: works on box headers."""

from __future__ import annotations

import struct
from typing import BinaryIO

HEADER = 8


def top_level_boxes(handle: BinaryIO, size: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, length) of the complete top-level boxes, stopping at the first torn one."""
    boxes = []
    offset = 0
    while offset + HEADER <= size:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < HEADER:
            break
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:
            length = size - offset
        if length < HEADER or offset + length > size:
            break
        boxes.append((kind, offset, length))
        offset += length
    return boxes


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
