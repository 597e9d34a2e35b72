"""Viewer accounting without I/O: WebRTC slots per stream and HLS viewers that expire by time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.media.viewers import HlsViewers, ViewerSlots

STREAMS = st.sampled_from(["cam", "hdmi"])
SESSIONS = st.sampled_from([f"s{n}" for n in range(12)])


def test_a_full_stream_refuses_and_a_released_slot_comes_back() -> None:
    slots = ViewerSlots(2)
    assert slots.reserve("cam", "a") and slots.reserve("cam", "b")
    assert not slots.reserve("cam", "c")
    assert slots.reserve("hdmi", "c"), "streams are limited separately"
    assert slots.release("a")
    assert not slots.release("a"), "a slot is given back once"
    assert slots.reserve("cam", "d")
    assert (slots.count("cam"), slots.count("hdmi"), slots.count("none")) == (2, 1, 0)


def test_a_session_cannot_hold_two_slots() -> None:
    slots = ViewerSlots(5)
    slots.reserve("cam", "a")
    with pytest.raises(ValueError, match="already holds"):
        slots.reserve("hdmi", "a")


@given(
    st.integers(min_value=1, max_value=4),
    st.lists(st.tuples(st.booleans(), STREAMS, SESSIONS), max_size=60),
)
def test_slots_never_exceed_the_limit_and_match_a_model(
    limit: int, steps: list[tuple[bool, str, str]]
) -> None:
    slots = ViewerSlots(limit)
    model: dict[str, str] = {}
    for reserve, stream, session in steps:
        if reserve and session not in model:
            admitted = slots.reserve(stream, session)
            assert admitted == (sum(1 for s in model.values() if s == stream) < limit)
            if admitted:
                model[session] = stream
        elif not reserve:
            assert slots.release(session) == (model.pop(session, None) is not None)
        for name in ("cam", "hdmi"):
            assert slots.count(name) == sum(1 for s in model.values() if s == name) <= limit


def test_an_hls_viewer_counts_for_the_window_after_its_last_fetch() -> None:
    viewers = HlsViewers()
    viewers.seen("10.0.0.2", now=100.0, window=3.0)
    viewers.seen("10.0.0.3", now=101.0, window=3.0)
    viewers.seen("10.0.0.2", now=102.0, window=3.0)
    assert viewers.count(102.5) == 2
    assert viewers.count(104.5) == 1, "10.0.0.3 stopped fetching at 101"
    assert viewers.count(105.0) == 0, "nobody fetched for a whole window"


def test_quiet_hls_clients_are_forgotten_at_the_next_fetch() -> None:
    viewers = HlsViewers()
    for n in range(100):
        viewers.seen(f"10.0.1.{n}", now=float(n), window=3.0)
    assert viewers.count(99.0) == 3
    assert len(viewers) <= 4


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 100)), min_size=1, max_size=30
    ),
    st.floats(0, 200),
)
def test_hls_count_is_the_clients_seen_within_the_window(
    fetches: list[tuple[str, float]], now: float
) -> None:
    viewers = HlsViewers()
    fetches.sort(key=lambda fetch: fetch[1])
    last: dict[str, float] = {}
    for client, at in fetches:
        viewers.seen(client, at, 5.0)
        last[client] = at
    now = max(now, fetches[-1][1])
    assert viewers.count(now) == sum(1 for at in last.values() if at + 5.0 > now)
