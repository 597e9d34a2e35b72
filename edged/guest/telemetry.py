"""The watch page's reports of one view, as plain decisions: what a beacon says, and what it
counts. No I/O. One random id per page view, no cookie; the box keeps counters only.

A view reports `start` (it plays), `first-frame`, `watched` at 3, 10 and 30 s of playing, `end`
(the seconds it played, when the guest leaves) and `unmute`; each at most once per page view.
A report may name the campaign that brought the guest (the page's link or the landing page's
`?campaign=`, kept in the tab's sessionStorage): a string, counted only if configured.

The page's "at most once" is a promise of the page only. The box issues each view: the watch
page carries a view token (`issue_view`: a random id, the time, and an HMAC with a key of this
daemon), and a report counts only with a fresh token for its own clip (`verified_view`). Then
each (token, report) counts once (`SeenReports`), each client (an IPv6 one by its /64) counts
each report of a clip at most once per VIEW_WINDOW (`ClientReports`), and the web layer takes
reports from one client at a bounded rate (REPORT_BURST, REPORT_INTERVAL). A script with
fresh ids counts nothing; one loading the page again and again counts one view per window.
"""

from __future__ import annotations

import hashlib
import hmac
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
_ID = re.compile(r"^[0-9a-f]{16}\.[0-9a-f]{1,12}\.[0-9a-f]{32}$")  # a view token
_SHAPE = '{"id": token, "clip": name, "report": ..., "seconds": ...}'
VIEW_SECONDS = 3600  # a view token is good this long after its page was served
VIEW_WINDOW = 600.0  # one client counts each report of a clip once in this long
SEEN_CLIENTS = 16384  # (client, clip, report) entries remembered for the window
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
        raise ValueError("id is the view token of the watch page")
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


def _view_mac(key: bytes, nonce: str, clip: str, issued: int) -> str:
    message = f"{nonce}|{issued:x}|{clip}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def issue_view(key: bytes, clip: str, issued: int, nonce: str) -> str:
    """The view token a watch page of `clip` carries: `nonce.issued.mac` (nonce: 16 hex digits,
    issued: the daemon's monotonic seconds, in hex)."""
    return f"{nonce}.{issued:x}.{_view_mac(key, nonce, clip, issued)}"


def verified_view(key: bytes, token: str, clip: str, now: int) -> bool:
    """Whether `token` is one this daemon issued for a page of `clip`, at most VIEW_SECONDS ago."""
    if not _ID.match(token):
        return False
    nonce, issued_hex, mac = token.split(".")
    issued = int(issued_hex, 16)
    if not 0 <= now - issued <= VIEW_SECONDS:
        return False
    return hmac.compare_digest(mac, _view_mac(key, nonce, clip, issued))


class ClientReports:
    """Each (client, clip, report) counted at most once per `window` seconds: a client loading
    the page over and over counts one view. The least recent entry goes first past `capacity`."""

    def __init__(self, window: float = VIEW_WINDOW, capacity: int = SEEN_CLIENTS) -> None:
        self._window = window
        self._capacity = capacity
        self._counted: OrderedDict[str, float] = OrderedDict()

    def first(self, client: str, report: WatchReport, now: float) -> bool:
        """Whether `report` counts for `client` now (then it is remembered from `now`)."""
        key = f"{client}/{report.clip}/{report.label}"
        counted = self._counted.get(key)
        if counted is not None and now - counted < self._window:
            return False
        self._counted.pop(key, None)
        self._counted[key] = now
        while len(self._counted) > self._capacity:
            self._counted.popitem(last=False)
        return True
