"""A staged clip and the watch page's reports, on a running edged in headless Chromium as a
phone (390x844).

Run inside a network namespace of the test's own (tests/integration/test_staged_browser.py).
Usage: python -m tests.browser.staged_in_chromium CONFIG DATA_DIR CLIP
  CLIP: a clip in the box's cache (at least 10 s long). Its window is set through PATCH
  /api/v1/assets/CLIP: first opening an hour ahead (staged), then opened (in the past).
Prints one JSON line: {"staged": {"tile": links to its watch page on the landing page,
"bytes", "watch", "poster": statuses}, "opened": the same once opened, "views",
"retained_10s", "ends", "unmutes": the counters /metrics shows after playing (opened from the
landing page of campaign "flyer", sound on by its button), "played": the clip's time then,
"campaign_views": edged_guest_clip_views_total by campaign once the clip is opened again by a
link of campaign "radio", "radio_start": the campaign its start report named, "error": str}.
  The config names the campaigns "flyer" and "radio"; CLIP has sound.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Error, Page, sync_playwright
from playwright.sync_api import TimeoutError as PageTimeout

from tests.browser.page_in_chromium import (
    CHROMIUM,
    FIRST_FRAME,
    FLAGS,
    PLAIN_CANDIDATES,
    SOUND_BUTTON,
    running_edged,
)

DEADLINE = 40.0  # seconds for the 10-second report to show
PLAYBACK_RATE = 2


def call(url: str, method: str = "GET", body: bytes = b"", token: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body or None, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 http only
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def counter(base: str, name: str, labels: str) -> int:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def counted(base: str, name: str, labels: str, at_least: int) -> int:
    """The counter once it reaches `at_least`, or what it is at the deadline."""
    deadline = time.monotonic() + DEADLINE
    value = counter(base, name, labels)
    while value < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
        value = counter(base, name, labels)
    return value


def what_a_guest_gets(page: Page, base: str, clip: str) -> dict[str, object]:
    page.goto(base + "/", wait_until="load")
    return {
        "tile": page.locator(f'a[href="/watch/{clip}"]').count(),
        "bytes": call(f"{base}/assets/{clip}"),
        "watch": call(f"{base}/watch/{clip}"),
        "poster": call(f"{base}/posters/{clip}.jpg"),
    }


def window(base: str, clip: str, token: str, publish_at: datetime) -> int:
    body = json.dumps({"publish_at": publish_at.isoformat().replace("+00:00", "Z")}).encode()
    return call(f"{base}/api/v1/assets/{clip}", "PATCH", body, token)


def run(page: Page, base: str, clip: str, token: str) -> dict[str, object]:
    result: dict[str, object] = {"error": ""}
    now = datetime.now(UTC)
    patched = [window(base, clip, token, now + timedelta(hours=1))]
    result["staged"] = what_a_guest_gets(page, base, clip)
    patched.append(window(base, clip, token, now - timedelta(hours=1)))  # the window opens
    result["patched"] = patched
    result["opened"] = what_a_guest_gets(page, base, clip)
    page.goto(f"{base}/?campaign=flyer")  # a campaign's landing page, then its tile
    page.locator(f'a[href="/watch/{clip}"]').click()
    page.wait_for_url(f"{base}/watch/{clip}")
    page.evaluate(FIRST_FRAME)
    # Twice as fast: the 10 s of the clip the report counts (steps of currentTime, each well
    # under the 1.5 s that reads as a seek) played in 5 s of the test's.
    page.evaluate(f"() => {{ document.querySelector('video').playbackRate = {PLAYBACK_RATE}; }}")
    labels = f'clip="{clip}"'
    result["views"] = counted(base, "edged_clip_views_total", labels, 1)
    page.get_by_role("button", name=SOUND_BUTTON).click()  # a real tap
    result["unmutes"] = counted(base, "edged_clip_reports_total", 'report="unmute"', 1)
    result["retained_10s"] = counted(base, "edged_clip_retained_10s_total", labels, 1)
    result["played"] = page.evaluate("() => document.querySelector('video').currentTime")
    page.goto("about:blank")  # pagehide: the view's end report
    result["ends"] = counted(base, "edged_clip_reports_total", 'report="end"', 1)
    # A QR straight to the clip: its start names the link's campaign. The same phone's second
    # view of the clip within the box's window counts no view (review 16b, finding 1).
    page.add_init_script(KEEP_BEACONS)
    page.goto(f"{base}/watch/{clip}?campaign=radio")
    result["radio_start"] = started_from(page)
    views = {
        name: counter(base, "edged_guest_clip_views_total", f'campaign="{name}"')
        for name in ("flyer", "radio", "none")
    }
    result["campaign_views"] = views
    result["reports_before_the_picture"] = left_before_the_picture(page, base, clip)
    return result


def left_before_the_picture(page: Page, base: str, clip: str) -> bool:
    """A guest on a slow link, no first frame yet (review s8 #5): the reports (watch.js, which
    reports the end of the view when the guest leaves) load with the poster. Whether they ran.
    (The end itself would not be counted again: the same phone, the same clip, just now.)"""
    page.route(f"**/assets/{clip}", lambda route: None)  # the clip's bytes never come
    page.goto(f"{base}/watch/{clip}?campaign=late")
    page.wait_for_function("() => document.querySelector('video').poster !== ''")
    try:  # watch.js keeps the link's campaign in the tab (which held "radio")
        page.wait_for_function("() => sessionStorage.getItem('campaign') === 'late'", timeout=5000)
    except PageTimeout:
        return False
    finally:
        page.goto("about:blank")
    return True


# The page's beacons' bodies, kept in the page as well as sent.
KEEP_BEACONS = """{const send = navigator.sendBeacon.bind(navigator); window.sent = [];
navigator.sendBeacon = (url, body) => { body.text().then((t) => window.sent.push(t));
return send(url, body); };}"""


def started_from(page: Page) -> str:
    """The campaign the page's first start report named, once one is sent ("" if none by the
    deadline)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for text in page.evaluate("() => window.sent || []"):
            if '"report":"start"' in text:
                return str(json.loads(text).get("campaign", ""))
        page.wait_for_timeout(200)
    return ""


def main() -> None:
    config, data_dir, clip = sys.argv[1:4]
    with running_edged(config, data_dir) as base:
        token = (Path(data_dir) / "admin.token").read_text().strip()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=[*FLAGS, PLAIN_CANDIDATES]
            )
            page = browser.new_page(viewport={"width": 390, "height": 844})
            try:
                result = run(page, base, clip, token)
            except Error as error:
                result = {"error": str(error)}
            browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
