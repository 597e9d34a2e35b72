"""Open the landing page of a running edged in headless Chromium at a phone's viewport and check
what a guest sees there: the tiles, their marks, and a clip added meanwhile appearing without a
reload. Run inside a network namespace of the test's own (tests/integration/test_browser.py).

Usage: python -m tests.browser.landing_in_chromium CONFIG DATA_DIR NEW_CLIP [--screenshot=PNG]
    [--hostile=NAME] [--logo=PNG]
  NEW_CLIP: a clip PUT through the API once the page is open (named encore.mp4, with a title).
  --logo=PNG: PUT as the event's logo before the page is opened.
  --hostile=NAME: clip NAME gets HOSTILE_TITLE (a <script>) before the page is opened (and a
  plain title again before the screenshot, taken last).
Before: DATA_DIR's cache holds the clips the test put there; the daemon's test pattern is live.
Prints one JSON line: {"error": str, "page_bytes": bytes of / before images,
"tiles": [{"title", "badges", "duration", "href"}] as first shown, "refreshed": the titles
after the clip was added, "reloaded": whether the page was loaded again meanwhile,
"script_ran": whether a clip title's <script> ran, "logo_width": the logo's
natural width as the page shows it (0: none or not decoded), "foreign": requests to any other host,
"overflow": whether the page is wider than the viewport at 320 px, "tallest": the tallest
tile's height in px, "above_fold": tiles whose top is within the first screen, "next": the
watch page of the --hostile clip (default opening.mp4) once it plays: its bar's "title" and the
"href" of its next clip}.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Error, Page, sync_playwright

from edged.web.event_page import REFRESH_MS
from tests.browser.page_in_chromium import CHROMIUM, FLAGS, running_edged

NEW_TITLE = "Encore: the finale"
JSON = "application/json"
# A title that would run if the page put it in as markup.
HOSTILE_TITLE = "<script>window.edgedPwned=1</script>Opening <b>night</b>"
TILES = """() => Array.from(document.querySelectorAll('#g .t'), (tile) => ({
  title: tile.querySelector('.n').textContent,
  badges: Array.from(tile.querySelectorAll('.l'), (b) => b.textContent),
  duration: (tile.querySelector('.d') || {}).textContent || '',
  href: tile.getAttribute('href'),
  top: tile.getBoundingClientRect().top,
  height: tile.getBoundingClientRect().height,
}))"""


def api(base: str, token: str, method: str, path: str, body: bytes, kind: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - http to the daemon in the namespace
        base + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return int(response.status)


def page_bytes(base: str) -> int:
    with urllib.request.urlopen(base + "/", timeout=10) as response:  # noqa: S310
        return len(response.read())


def wait_for_live(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(base + "/api/v1/guest/tiles", timeout=5) as response:  # noqa: S310
            if any(t["kind"] == "live" for t in json.load(response)["tiles"]):
                return
        time.sleep(0.2)
    raise SystemExit("no live stream in 30 s")


def look(
    page: Page, base: str, token: str, clip: Path, options: dict[str, str]
) -> dict[str, object]:
    """Open /, read the tiles, add a clip through the API, wait for its tile (no reload)."""
    result: dict[str, object] = {"error": "", "page_bytes": page_bytes(base)}
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))
    if "logo" in options:
        logo = Path(options["logo"]).read_bytes()
        api(base, token, "PUT", "/api/v1/guest/logo", logo, "image/png")
    if "hostile" in options:
        title = json.dumps({"title": HOSTILE_TITLE}).encode()
        api(base, token, "PATCH", f"/api/v1/assets/{options['hostile']}", title, JSON)
    page.clock.install()  # the page's own timer, moved on by REFRESH_MS instead of waited for
    page.goto(base + "/", wait_until="load")
    page.evaluate("() => { window.edgedSameLoad = true; }")
    tiles = page.evaluate(TILES)
    result["tiles"] = [{k: t[k] for k in ("title", "badges", "duration", "href")} for t in tiles]
    result["tallest"] = max((t["height"] for t in tiles), default=0)
    result["above_fold"] = sum(1 for t in tiles if t["top"] < 844)
    result["script_ran"] = page.evaluate("() => window.edgedPwned === 1")
    result["logo_width"] = page.evaluate(
        "() => (document.querySelector('header img') || {}).naturalWidth || 0"
    )
    api(base, token, "PUT", "/api/v1/assets/encore.mp4", clip.read_bytes(), "video/mp4")
    facts = json.dumps({"title": NEW_TITLE, "description": "The last song, from the front row"})
    api(base, token, "PATCH", "/api/v1/assets/encore.mp4", facts.encode(), JSON)
    try:
        refreshed(page, NEW_TITLE)
    except Error as error:
        result["error"] = str(error)
    result["refreshed"] = [t["title"] for t in page.evaluate(TILES)]
    result["reloaded"] = not page.evaluate("() => window.edgedSameLoad === true")
    if "screenshot" in options:
        picture(page, base, token, options)
    page.set_viewport_size({"width": 320, "height": 640})
    result["overflow"] = page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    result["next"] = next_clip(page, base, options.get("hostile", "opening.mp4"))
    result["foreign"] = foreign
    return result


def refreshed(page: Page, text: str) -> None:
    """Until `text` shows: the page's clock moved on by its refresh period (its setInterval
    asks for the tiles again) and 5 s of real time for the answer, twice: 30 s of the page's
    time at most, as when it was waited for."""
    for rounds_left in (1, 0):
        page.clock.fast_forward(REFRESH_MS)
        try:
            page.get_by_text(text).wait_for(state="visible", timeout=5000)
            return
        except Error:
            if not rounds_left:
                raise


def next_clip(page: Page, base: str, clip: str) -> dict[str, object]:
    """The watch page of `clip`: once it plays, its bar's title and next clip."""
    page.goto(f"{base}/watch/{clip}")
    bar = page.locator("#n")
    try:
        bar.wait_for(state="visible", timeout=20000)
    except Error as error:
        return {"error": str(error)}
    return {"href": bar.get_attribute("href"), "title": page.locator("#t").text_content()}


def picture(page: Page, base: str, token: str, options: dict[str, str]) -> None:
    """The page as the README shows it: the hostile title replaced by a plain one first."""
    if "hostile" in options:
        facts = json.dumps({"title": "Opening night", "description": "The doors open at 8"})
        api(base, token, "PATCH", f"/api/v1/assets/{options['hostile']}", facts.encode(), JSON)
        refreshed(page, "Opening night")
    page.screenshot(path=options["screenshot"])


def main() -> None:
    config, data_dir, clip = sys.argv[1:4]
    options = dict(a[2:].split("=", 1) for a in sys.argv[4:] if "=" in a)
    with running_edged(config, data_dir) as base:
        token = (Path(data_dir) / "admin.token").read_text().strip()
        wait_for_live(base)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 390, "height": 844})
            result = look(page, base, token, Path(clip), options)
            browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
