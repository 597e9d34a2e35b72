"""The one MP4 box walker: a header (32- or 64-bit length, or to the end of the file), whole
boxes from a file, from a muxer's growing output, and whether metadata comes first."""

from __future__ import annotations

import io
import struct

from hypothesis import given
from hypothesis import strategies as st

from edged.media.mp4 import (
    BoxHeader,
    box_header,
    metadata_first,
    take_whole_boxes,
    top_level_boxes,
)


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def in_file(data: bytes) -> list[tuple[bytes, int, int]]:
    return top_level_boxes(io.BytesIO(data), len(data))


def test_a_header_is_read_only_when_all_of_it_is_there() -> None:
    assert box_header(box(b"ftyp", b"isom")) == BoxHeader(b"ftyp", 12, 8)
    assert box_header(large_box(b"mdat", b"x" * 5)) == BoxHeader(b"mdat", 21, 16)
    assert box_header(box(b"moov")[:7]) is None
    assert box_header(large_box(b"mdat")[:15]) is None  # the 64-bit length is cut off
    assert box_header(b"\0" * 4 + box(b"free"), 4) == BoxHeader(b"free", 8, 8)
    assert box_header(struct.pack(">I4s", 0, b"mdat")) == BoxHeader(b"mdat", 0, 8)


def test_lengths_that_cannot_be_a_box_are_not_valid() -> None:
    assert not BoxHeader(b"junk", 4, 8).valid
    assert not BoxHeader(b"mdat", 12, 16).valid  # a 64-bit length shorter than its header
    assert BoxHeader(b"mdat", 0, 8).valid  # to the end of the file
    assert BoxHeader(b"moov", 8, 8).valid


def test_a_file_walk_stops_at_the_first_torn_or_invalid_box() -> None:
    whole = box(b"ftyp", b"isom") + large_box(b"moov", b"m" * 4)
    assert in_file(whole) == [(b"ftyp", 0, 12), (b"moov", 12, 20)]
    assert in_file(whole + box(b"moof", b"f" * 8)[:10]) == in_file(whole)
    assert in_file(whole + b"\0\0\0\4junk" + box(b"free")) == in_file(whole)
    open_ended = whole + struct.pack(">I4s", 0, b"mdat") + b"frames"
    assert in_file(open_ended)[-1] == (b"mdat", 32, 14)


def test_a_growing_buffer_gives_each_box_once_it_is_whole() -> None:
    first, second = box(b"moof", b"f" * 20), large_box(b"mdat", b"d" * 30)
    buffer = bytearray(first + second[:20])
    assert take_whole_boxes(buffer) == [(b"moof", first)]
    assert buffer == second[:20]
    buffer += second[20:]
    assert take_whole_boxes(buffer) == [(b"mdat", second)]
    assert buffer == b""


def test_a_box_to_the_end_of_the_file_is_never_whole_while_the_output_grows() -> None:
    buffer = bytearray(struct.pack(">I4s", 0, b"mdat") + b"frames")
    assert take_whole_boxes(buffer) == []
    assert len(buffer) == 14


boxes = st.lists(
    st.tuples(
        st.sampled_from([b"ftyp", b"moov", b"moof", b"mdat", b"free"]),
        st.binary(max_size=40),
        st.booleans(),
    ),
    max_size=8,
)


@given(boxes, st.lists(st.integers(min_value=1, max_value=50), max_size=30))
def test_any_split_of_a_muxers_output_gives_the_boxes_a_file_walk_finds(
    layout: list[tuple[bytes, bytes, bool]], cuts: list[int]
) -> None:
    data = b"".join(
        large_box(kind, payload) if large else box(kind, payload) for kind, payload, large in layout
    )
    buffer = bytearray()
    taken: list[tuple[bytes, bytes]] = []
    at = 0
    for cut in [*cuts, len(data)]:
        buffer += data[at : at + cut]
        at += cut
        taken += take_whole_boxes(buffer)
    assert buffer == b""
    assert taken == [
        (kind, data[offset : offset + length]) for kind, offset, length in in_file(data)
    ]
    assert [kind for kind, _ in taken] == [kind for kind, _, _ in layout]


def test_metadata_first_reads_box_headers_only() -> None:
    assert metadata_first(box(b"ftyp", b"isom") + box(b"moov")) is True
    assert metadata_first(large_box(b"ftyp") + box(b"mdat")) is False
    assert metadata_first(box(b"ftyp", b"isom")) is None  # not yet told
    assert metadata_first(box(b"ftyp") + large_box(b"mdat")[:12]) is None  # its header is cut
    assert metadata_first(b"\x00\x00\x00\x04junk") is False  # not a box structure
    assert metadata_first(struct.pack(">I4s", 0, b"free") + box(b"moov")) is False
