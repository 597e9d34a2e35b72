"""The watch page's reports (#16 part 5): what a beacon may say and what it counts."""

from __future__ import annotations

import json

import pytest

from edged.guest.telemetry import (
    MAX_BODY,
    SeenReports,
    WatchReport,
    parse_watch_report,
)
from edged.metrics import CLIP_REPORTS

ID = "0123456789abcdef"


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
        (json.dumps({"clip": "a", "report": "start"}).encode(), "id is 8 to 32"),
        (json.dumps({"id": "ABCDEF12", "clip": "a", "report": "start"}).encode(), "id is"),
        (json.dumps({"id": ID, "report": "start"}).encode(), "clip is"),
        (body(report="pause"), "report is one of"),
        (body(report="watched", seconds=11), "watched is reported at 3, 10, 30"),
        (body(report="watched"), "seconds is a number"),
        (body(report="end", seconds=True), "seconds is a number"),
        (body(report="end", seconds=-1), "seconds is 0 to"),
        (body(report="end", seconds=1e9), "seconds is 0 to"),
        (b'{"id": "0123456789abcdef", "clip": "a", "report": "end", "seconds": NaN}', "number"),
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
