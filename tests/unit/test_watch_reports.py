"""The watch page's reports (#16 part 5): what a beacon may say and what it counts."""

from __future__ import annotations

import json

import pytest

from edged.guest.telemetry import (
    MAX_BODY,
    VIEW_SECONDS,
    VIEW_WINDOW,
    ClientReports,
    SeenReports,
    WatchReport,
    issue_view,
    parse_watch_report,
    verified_view,
)
from edged.metrics import CLIP_REPORTS

KEY = b"k" * 32
ID = issue_view(KEY, "teaser", 100, "0123456789abcdef")


def body(**fields: object) -> bytes:
    return json.dumps({"id": ID, "clip": "teaser", **fields}).encode()


def test_a_report_may_name_its_campaign() -> None:
    """Any string is taken here (the web layer counts configured names only); none is ""."""
    assert parse_watch_report(body(report="start", campaign="popup-1")).campaign == "popup-1"
    assert parse_watch_report(body(report="start", campaign="nope")).campaign == "nope"
    assert parse_watch_report(body(report="start", campaign=None)).campaign == ""
    assert parse_watch_report(body(report="start")).campaign == ""


def test_reports_of_a_view_and_what_they_count() -> None:
    start = parse_watch_report(body(report="start"))
    assert start == WatchReport(ID, "teaser", "start", 0.0)
    assert start.is_view and not start.is_retained and start.label == "start"
    ten = parse_watch_report(body(report="watched", seconds=10))
    assert ten.is_retained and not ten.is_view and ten.label == "watched-10s"
    assert not parse_watch_report(body(report="watched", seconds=30)).is_retained
    end = parse_watch_report(body(report="end", seconds=12.5))
    assert end.seconds == 12.5 and not end.is_retained
    assert parse_watch_report(body(report="unmute", seconds="ignored")).seconds == 0.0


def test_every_label_a_report_can_have_is_in_the_catalog() -> None:
    kinds = [("start", 0), ("first-frame", 0), ("end", 1), ("unmute", 0)]
    kinds += [("watched", mark) for mark in (3, 10, 30)]
    labels = {parse_watch_report(body(report=k, seconds=s)).label for k, s in kinds}
    assert labels == set(CLIP_REPORTS)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "send JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"clip": "a", "report": "start"}).encode(), "id is the view token"),
        (json.dumps({"id": "0123456789abcdef", "clip": "a", "report": "start"}).encode(), "id is"),
        (json.dumps({"id": ID.upper(), "clip": "a", "report": "start"}).encode(), "id is"),
        (json.dumps({"id": ID, "report": "start"}).encode(), "clip is"),
        (body(report="pause"), "report is one of"),
        (body(report="watched", seconds=11), "watched is reported at 3, 10, 30"),
        (body(report="watched"), "seconds is a number"),
        (body(report="end", seconds=True), "seconds is a number"),
        (body(report="end", seconds=-1), "seconds is 0 to"),
        (body(report="end", seconds=1e9), "seconds is 0 to"),
        (body(report="end").replace(b'"end"', b'"end", "seconds": NaN'), "number"),
        (body(report="start", pad="x" * MAX_BODY), "at most"),
        (body(report="start", campaign=5), "campaign is"),
        (body(report="start", campaign=["popup-1"]), "campaign is"),
    ],
)
def test_anything_else_is_refused_with_a_short_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_watch_report(raw)


def test_each_report_of_a_view_counts_once_and_the_memory_is_bounded() -> None:
    """Review of #16, finding 5: the box counted every POST; "once" was the page's promise."""
    seen = SeenReports(capacity=3)
    start, three = WatchReport(ID, "a", "start", 0.0), WatchReport(ID, "a", "watched", 3.0)
    assert seen.first(start) and seen.first(three)
    assert not seen.first(start) and not seen.first(WatchReport(ID, "b", "start", 0.0))
    assert seen.first(WatchReport(ID, "a", "watched", 10.0))  # another mark of the same view
    assert seen.first(WatchReport("fedcba98", "a", "start", 0.0))  # another view
    assert not seen.first(start)  # seen lately: kept; `three` was the least recent
    assert seen.first(three)


def test_a_view_token_counts_for_its_own_clip_while_fresh() -> None:
    """Review 16b, finding 1: the box issues each view; an id a client makes up counts nothing."""
    token = issue_view(KEY, "teaser", 1000, "00112233445566ff")
    assert verified_view(KEY, token, "teaser", 1000)
    assert verified_view(KEY, token, "teaser", 1000 + VIEW_SECONDS)
    assert not verified_view(KEY, token, "teaser", 1001 + VIEW_SECONDS)  # too old
    assert not verified_view(KEY, token, "teaser", 999)  # from the future
    assert not verified_view(KEY, token, "other", 1000)  # another clip's page
    assert not verified_view(b"x" * 32, token, "teaser", 1000)  # another daemon's key
    nonce, issued, mac = token.split(".")
    assert not verified_view(KEY, f"{nonce}.{int(issued, 16) + 1:x}.{mac}", "teaser", 1001)
    assert not verified_view(KEY, f"{'0' * 16}.{issued}.{mac}", "teaser", 1000)
    assert not verified_view(KEY, "0123456789abcdef", "teaser", 1000)


def test_a_client_counts_each_report_of_a_clip_once_a_window() -> None:
    recent = ClientReports(window=VIEW_WINDOW, capacity=2)
    start = WatchReport(ID, "a", "start", 0.0)
    other_view = WatchReport("f" * 16, "a", "start", 0.0)
    assert recent.first("10.0.0.2", start, 0.0)
    assert not recent.first("10.0.0.2", other_view, 1.0)  # a new page from the same client
    assert recent.first("10.0.0.3", other_view, 1.0)  # another client
    assert recent.first("10.0.0.2", WatchReport(ID, "a", "watched", 10.0), 2.0)  # capacity: 2
    assert recent.first("10.0.0.3", other_view, VIEW_WINDOW + 1.0)  # the window is over
    assert recent.first("10.0.0.2", start, 3.0)  # forgotten (the least recent past capacity)
