"""Clip facts, what a guest sees of a clip, and the order that sinks failing clips (#16)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.guest.clips import (
    ClipCounts,
    ClipFacts,
    apply_fields,
    default_facts,
    facts_document,
    facts_from_fields,
    failing,
    format_time,
    guest_view,
    order_clips,
    parse_time,
    retention_share,
    title_from_name,
)

T = 1_800_000_000.0


def test_a_clip_nobody_described_is_titled_after_its_file_and_always_shown() -> None:
    assert title_from_name("summer_teaser-2.mp4") == "summer teaser 2"
    assert title_from_name("intro") == "intro"
    assert title_from_name("___") == "___"
    facts = default_facts("intro")
    assert facts == ClipFacts(title="intro")
    assert guest_view(facts, T, signed_up=False) == "show"


@pytest.mark.parametrize(
    ("publish_at", "unpublish_at", "now", "view"),
    [
        (T, None, T - 1, "hidden"),
        (T, None, T, "show"),
        (None, T, T - 1, "show"),
        (None, T, T, "hidden"),
        (T, T + 10, T + 5, "show"),
        (T, T + 10, T + 10, "hidden"),
    ],
)
def test_outside_its_window_a_clip_is_hidden(
    publish_at: float | None, unpublish_at: float | None, now: float, view: str
) -> None:
    facts = ClipFacts("a", publish_at=publish_at, unpublish_at=unpublish_at)
    assert guest_view(facts, now, signed_up=False) == view


def test_an_exclusive_clip_is_for_members_and_hidden_wins_over_members() -> None:
    exclusive = ClipFacts("a", exclusive=True)
    assert guest_view(exclusive, T, signed_up=False) == "members"
    assert guest_view(exclusive, T, signed_up=True) == "show"
    staged = ClipFacts("a", exclusive=True, publish_at=T + 1)
    assert guest_view(staged, T, signed_up=True) == "hidden"
    assert guest_view(staged, T, signed_up=False) == "hidden"


def test_rfc_3339_times_read_with_their_offset() -> None:
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000.0
    assert parse_time("2027-01-15T09:00:00+01:00") == 1_800_000_000.0
    assert parse_time("2027-01-15t08:00:00.5z") == 1_800_000_000.5
    assert parse_time(None) is None
    assert format_time(1_800_000_000.0) == "2027-01-15T08:00:00Z"
    assert format_time(None) is None


@pytest.mark.parametrize(
    "value", ["2027-01-15T08:00:00", "2027-01-15", "tomorrow", 1_800_000_000, "", "x" * 50, True]
)
def test_a_time_without_offset_or_not_a_time_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time(value)


def test_fields_change_only_what_they_name() -> None:
    facts = facts_from_fields("intro", {"title": "<b>Intro</b>", "exclusive": True})
    assert facts == ClipFacts("<b>Intro</b>", exclusive=True)  # plain text, escaped when shown
    later = apply_fields(facts, {"publish_at": "2027-01-15T08:00:00Z", "description": "d"})
    assert later == ClipFacts("<b>Intro</b>", "d", True, 1_800_000_000.0, None)
    assert apply_fields(later, {"publish_at": None}).publish_at is None
    assert facts_from_fields("intro", {"title": None}).title == "intro"
    assert facts_from_fields("intro", {"title": "  "}).title == "intro"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"exclusive": "yes"}, "exclusive must be true or false"),
        ({"title": 3}, "title must be text"),
        ({"title": "x" * 121}, "at most 120"),
        ({"description": "a\x00b"}, "no control characters"),
        ({"publish_at": "soon"}, "publish_at: an RFC 3339"),
        (
            {"publish_at": "2027-01-15T08:00:00Z", "unpublish_at": "2027-01-15T08:00:00Z"},
            "unpublish_at must be after publish_at",
        ),
    ],
)
def test_bad_fields_are_refused_with_a_short_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        facts_from_fields("intro", fields)


def test_retention_and_failing() -> None:
    assert retention_share(ClipCounts()) is None
    assert retention_share(ClipCounts(4, 1)) == 0.25
    assert retention_share(ClipCounts(2, 5)) == 1.0  # a retained report without its view
    assert not failing(ClipCounts(19, 0), 0.5, 20)  # too few views to judge
    assert failing(ClipCounts(20, 9), 0.5, 20)
    assert not failing(ClipCounts(20, 10), 0.5, 20)
    assert not failing(ClipCounts(100, 0), 0.0, 20)  # a floor of 0 sinks nothing


def test_failing_clips_sink_to_the_bottom_in_their_order() -> None:
    counts = {"b": ClipCounts(10, 0), "d": ClipCounts(10, 1), "c": ClipCounts(10, 9)}
    assert order_clips(["a", "b", "c", "d"], counts, 0.5, 10) == ["a", "c", "b", "d"]
    assert order_clips(["a", "b"], {}, 0.5, 10) == ["a", "b"]


@given(
    st.lists(st.sampled_from("abcdefgh"), unique=True),
    st.dictionaries(
        st.sampled_from("abcdefgh"),
        st.builds(ClipCounts, st.integers(0, 50), st.integers(0, 50)),
    ),
    st.floats(0, 1),
    st.integers(1, 30),
)
def test_order_keeps_every_clip_once_and_failing_ones_last(
    names: list[str], counts: dict[str, ClipCounts], floor: float, min_views: int
) -> None:
    ordered = order_clips(names, counts, floor, min_views)
    assert sorted(ordered) == sorted(names)
    sunk = [failing(counts.get(name, ClipCounts()), floor, min_views) for name in ordered]
    assert sunk == sorted(sunk)  # no failing clip above one that holds


@given(
    publish=st.none() | st.floats(0, 2e9),
    exclusive=st.booleans(),
    now=st.floats(0, 4e9),
    signed_up=st.booleans(),
)
def test_a_withheld_clip_is_hidden_whatever_its_window(
    publish: float | None, exclusive: bool, now: float, signed_up: bool
) -> None:
    facts = ClipFacts("t", exclusive=exclusive, publish_at=publish, withheld=True)
    assert guest_view(facts, now, signed_up) == "hidden"
    assert facts_document(facts, now)["withheld"] is True
