"""HLS segment names: one URL per segment, the one the playlist lists (issue #21 item 12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.live import segment_name, segment_sequence


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_the_listed_name_gives_its_number(sequence: int) -> None:
    assert segment_sequence(segment_name(sequence)) == sequence


@given(st.text(max_size=16))
def test_a_name_that_parses_is_the_listed_name(text: str) -> None:
    name = f"segment-{text}.m4s"
    sequence = segment_sequence(name)
    assert sequence is None or segment_name(sequence) == name


@pytest.mark.parametrize(
    "name",
    [
        "segment-00001.m4s",
        "segment-01.m4s",
        "segment-\u0661.m4s",  # Arabic-Indic one
        "segment-\uff11.m4s",  # fullwidth one
        "segment-+1.m4s",
        "segment-1_0.m4s",
        "segment- 1.m4s",
        "segment-1.m4s\n",
        "segment-1xm4s",
        "segment-.m4s",
        "segment-1234567890123.m4s",
    ],
)
def test_aliases_are_not_segment_names(name: str) -> None:
    assert segment_sequence(name) is None


def test_examples() -> None:
    assert segment_sequence("segment-0.m4s") == 0
    assert segment_sequence("segment-10.m4s") == 10
