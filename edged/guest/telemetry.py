"""The watch page's reports of one view, as plain decisions: what a beacon says, and what it
counts. No I/O. One random id per page view, no cookie; the box keeps counters only.

A view reports `start` (it plays), `first-frame`, `watched` at 3, 10 and 30 s of playing, `end`
(the seconds it played, when the guest leaves) and `unmute`; each at most once per page view.
A report may name the campaign that brought the guest (the page's link or the landing page's
`?campaign=`, kept in the tab's sessionStorage): a string, counted only if configured.

The page's "at most once" is a promise of the page only: the box counts each (view id, report)
once itself (`SeenReports`), and takes reports from one client at a bounded rate (the web
layer's limiter, at REPORT_BURST and REPORT_INTERVAL), so a script cannot make a clip sink.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass

MAX_BODY = 512
MAX_SECONDS = 24 * 3600.0  # what a view may say it watched
MARKS = (3, 10, 30)  # seconds of playing that a view reports once each
RETAINED_MARK = 10  # the mark that counts a view as retained (edged_clip_retained_10s_total)
REPORTS = ("start", "first-frame", "watched", "end", "unmute")
_ID = re.compile(r"^[0-9a-f]{8,32}$")
_SHAPE = '{"id": hex, "clip": name, "report": ..., "seconds": ...}'
SEEN_REPORTS = 16384  # (view id, report) pairs remembered: ~2,000 views of 7 reports
REPORT_BURST = 30  # reports one client may send at once ...
REPORT_INTERVAL = 1.0  # ... then one per this many seconds (a view sends 7 over 30 s and more)
REPORT_CLIENTS = 4096  # clients remembered by the limiter


@dataclass(frozen=True)
class WatchReport:
    view_id: str
    clip: str
    report: str  # one of REPORTS
    seconds: float  # the mark for "watched", what was played for "end", else 0
    campaign: str = ""  # as the page said it ("" = none); a configured name only when counted

    @property
    def label(self) -> str:
        """The report as edged_clip_reports_total names it (metrics.CLIP_REPORTS)."""
        return f"watched-{self.seconds:g}s" if self.report == "watched" else self.report

    @property
    def is_view(self) -> bool:
        return self.report == "start"

    @property
    def is_retained(self) -> bool:
        return self.report == "watched" and self.seconds == RETAINED_MARK


def parse_watch_report(body: bytes) -> WatchReport:
    """The report in a beacon's body; ValueError with a short reason when it is not one. The
    clip is only a string here: the caller checks the box has it."""
    if len(body) > MAX_BODY:
        raise ValueError(f"a report is at most {MAX_BODY} bytes")
    try:
        report = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"send JSON: {_SHAPE}") from None
    if not isinstance(report, dict):
        raise ValueError(f"send a JSON object: {_SHAPE}")
    view_id, clip, kind = report.get("id"), report.get("clip"), report.get("report")
    if not isinstance(view_id, str) or not _ID.match(view_id):
        raise ValueError("id is 8 to 32 lowercase hex digits")
    if not isinstance(clip, str) or not clip:
        raise ValueError("clip is the clip's name")
    if kind not in REPORTS:
        raise ValueError(f"report is one of {', '.join(REPORTS)}")
    campaign = report.get("campaign", "")
    if campaign is None:  # what a page without a campaign may send
        campaign = ""
    if not isinstance(campaign, str):
        raise ValueError("campaign is a campaign's name")
    return WatchReport(view_id, clip, kind, _seconds(kind, report.get("seconds")), campaign)


def _seconds(kind: str, value: object) -> float:
    if kind not in ("watched", "end"):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("seconds is a number")
    if kind == "watched" and value not in MARKS:
        raise ValueError(f"watched is reported at {', '.join(map(str, MARKS))} seconds")
    if not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"seconds is 0 to {MAX_SECONDS:g}")
    return float(value)


class SeenReports:
    """The (view id, report) pairs counted lately, the least recently seen forgotten first past
    `capacity` (by then its view has long ended): a report is counted the first time only."""

    def __init__(self, capacity: int = SEEN_REPORTS) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first(self, report: WatchReport) -> bool:
        """Whether this is the first time `report` of its view came (it is remembered now)."""
        key = f"{report.view_id}/{report.label}"
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
