"""The event page's decisions (edged/guest/page.py) and its markup (edged/web/pages.py)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.guest.clips import ClipCounts, ClipFacts
from edged.guest.page import (
    LOGO_MAX_BYTES,
    PAGE_BUDGET,
    Clip,
    Tile,
    build_tiles,
    clock,
    display_title,
    logo_type,
    shorten,
    shown,
    tiles_document,
)
from edged.web.pages import landing_html

NOW = 1_800_000_000.0


def tiles_of(
    clips: list[Clip], *, signed_up: bool = False, counts: dict[str, ClipCounts] | None = None
) -> list[Tile]:
    return build_tiles(
        ["cam"],
        clips,
        now=NOW,
        signed_up=signed_up,
        counts=counts or {},
        min_retention_10s=0.5,
        min_views=10,
    )


def test_the_title_is_the_configured_one_else_the_event_never_the_box() -> None:
    assert display_title("Summer Tour", "gala") == "Summer Tour"
    assert display_title("  ", "gala") == "gala"
    assert display_title("", "default") == "Watch"  # the shipped event name means nothing


@pytest.mark.parametrize(
    ("seconds", "shown_as"),
    [
        (0, ""),
        (-1, ""),
        (float("nan"), ""),
        (0.4, "0:01"),
        (7, "0:07"),
        (61, "1:01"),
        (245, "4:05"),
    ],
)
def test_a_duration_reads_as_on_a_phone(seconds: float, shown_as: str) -> None:
    assert clock(seconds) == shown_as
    assert clock(3723) == "1:02:03"


def test_a_long_description_is_cut_at_a_word() -> None:
    assert shorten("one  two\nthree", 20) == "one two three"
    assert shorten("alpha beta gamma delta", 12) == "alpha beta\u2026"


def test_live_first_then_clips_hidden_ones_absent_exclusive_ones_locked() -> None:
    tiles = tiles_of(
        [
            Clip("a.mp4", ClipFacts("Teaser", "The first look"), 42.0),
            Clip("b.mp4", ClipFacts("Later", publish_at=NOW + 60), 10.0),
            Clip("c.mp4", ClipFacts("Backstage", exclusive=True), 61.0),
        ]
    )
    assert [(t.kind, t.name) for t in tiles] == [
        ("live", "cam"),
        ("clip", "a.mp4"),
        ("clip", "c.mp4"),
    ]
    live, teaser, backstage = tiles
    assert live.href == "/live/cam" and live.poster == "/live/cam/poster.jpg" and not live.duration
    assert (teaser.title, teaser.description, teaser.duration) == (
        "Teaser",
        "The first look",
        "0:42",
    )
    assert teaser.href == "/watch/a.mp4" and teaser.poster == "/posters/a.mp4.jpg"
    assert backstage.locked and backstage.href == "/join"
    member = tiles_of([Clip("c.mp4", ClipFacts("Backstage", exclusive=True), 61.0)], signed_up=True)
    assert not member[1].locked and member[1].href == "/watch/c.mp4"


def test_a_clip_that_loses_its_viewers_sinks_to_the_bottom() -> None:
    clips = [Clip(n, ClipFacts(n), 5.0) for n in ("a.mp4", "b.mp4", "c.mp4")]
    tiles = tiles_of(clips, counts={"a.mp4": ClipCounts(views=20, retained_10s=2)})
    assert [t.name for t in tiles] == ["cam", "b.mp4", "c.mp4", "a.mp4"]


def test_the_page_escapes_what_it_shows() -> None:
    hostile = "<script>alert(1)</script>"
    tiles = tiles_of([Clip("x.mp4", ClipFacts(hostile, hostile), 3.0)])
    page = landing_html(hostile, "box<1>", tiles, logo='/guest/logo?v="x')
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 4  # <title>, h1, tile x2
    assert "<small>box&lt;1&gt;</small>" in page and 'src="/guest/logo?v=&quot;x"' in page


def test_the_page_says_live_and_how_long() -> None:
    page = landing_html("Gala", "box", tiles_of([Clip("a.mp4", ClipFacts("Teaser"), 42.0)]))
    assert "<h1>Gala</h1>" in page and "<b class=l>LIVE</b>" in page
    assert "<em class=d>0:42</em>" in page and "<span class=n>Teaser</span>" in page
    assert 'href="/live/cam"' in page and 'src="/live/cam/poster.jpg"' in page
    assert "http://" not in page and "https://" not in page  # nothing leaves the box
    assert landing_html("Gala", "box", []).count("<p class=empty id=m>") == 1


def test_a_tagged_page_keeps_its_campaign_for_the_watch_pages() -> None:
    """The landing page of a campaign's link hands its name to the tab's sessionStorage, where
    the watch page's reports find it (static/watch.js); an untagged page keeps nothing."""
    tagged = landing_html("Gala", "box", [], campaign="popup-1")
    assert "sessionStorage.setItem('campaign',\"popup-1\")" in tagged
    assert "sessionStorage" not in landing_html("Gala", "box", [])


@given(
    st.lists(
        st.tuples(st.text(min_size=0, max_size=120), st.text(max_size=1000), st.floats(0, 1e5)),
        max_size=300,
    )
)
def test_a_page_of_any_clips_stays_within_its_budget(
    clips: list[tuple[str, str, float]],
) -> None:
    facts = [Clip(f"clip-{i}.mp4", ClipFacts(t, d), s) for i, (t, d, s) in enumerate(clips)]
    tiles = shown(tiles_of(facts))
    page = landing_html(
        "T" * 80, "b" * 63, tiles, logo="/guest/logo?v=0123456789abcdef", campaign="c" * 63
    )
    assert len(page.encode()) <= PAGE_BUDGET
    assert tiles == tiles_of(facts)[: len(tiles)]  # the first ones, in order
    assert tiles_document("T", tiles)["version"] == tiles_document("T", list(tiles))["version"]


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def test_a_logo_is_a_png_or_a_jpeg_told_by_its_bytes() -> None:
    assert logo_type(png(200, 80)) == "image/png"
    assert logo_type(b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9") == "image/jpeg"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b'<?xml version="1.0"?><svg onload="alert(1)"/>', "SVG"),
        (b"  <svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"GIF89a....", "not a PNG or JPEG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "truncated"),
        (png(5000, 10), "4096 px"),
        (b"\x89PNG\r\n\x1a\n", "IHDR"),
        (png(10, 10) + b"\x00" * LOGO_MAX_BYTES, "KiB"),
    ],
)
def test_other_logos_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        logo_type(body)
