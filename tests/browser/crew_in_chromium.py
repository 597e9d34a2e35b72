"""Log in to a running edged's /crew in headless Chromium as a phone (390x844) and watch the
crew screen draw itself and update without a reload.

Run inside a network namespace of the test's own (tests/integration/test_crew_browser.py).
Usage: python -m tests.browser.crew_in_chromium CONFIG DATA_DIR [--screenshot=PNG]
Prints one JSON line: {"login": the login page's heading, "camera": the first tile's stream,
fps text, thumbnail width (naturalWidth, 0 until loaded), sound line and level bar's width,
"warnings": the warnings' titles, "lines": the box's lines (label: value), "updated": whether
the screen redrew from a newer state, "reloaded": whether the page was loaded again meanwhile,
"page_bytes": the screen's HTML size, "foreign": requests to any other host, "overflow": whether
the page scrolls sideways, "error": str}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Error, Page, sync_playwright

from tests.browser.page_in_chromium import CHROMIUM, FLAGS, running_edged

CAMERA = """() => { const tile = document.querySelector('.cam');
  const img = tile.querySelector('img');
  return {stream: tile.dataset.stream, fps: tile.querySelector('.fps').textContent,
          thumbnail: img.complete ? img.naturalWidth : 0,
          sound: tile.querySelectorAll('.m')[1].textContent,
          meter: tile.querySelector('.bar i') ? tile.querySelector('.bar i').offsetWidth : 0}; }"""
THUMBNAIL_LOADED = """() => { const img = document.querySelector('.cam img');
  return img !== null && img.complete && img.naturalWidth > 0; }"""
OVERFLOW = "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"


def crew_screen(page: Page, base: str, token: str, options: dict[str, str]) -> dict[str, object]:
    result: dict[str, object] = {}
    foreign: list[str] = []
    host = urlsplit(base).netloc
    page.on("request", lambda r: foreign.append(r.url) if urlsplit(r.url).netloc != host else None)
    page.goto(f"{base}/crew")
    result["login"] = page.inner_text("h1")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    screen = page.context.request.get(f"{base}/crew")
    result["page_bytes"] = len(screen.body())
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page loads again
    page.wait_for_selector(".cam .fps", timeout=10000)
    page.wait_for_function(THUMBNAIL_LOADED, timeout=15000, polling=200)
    first = page.evaluate("() => document.body.dataset.at")
    page.wait_for_function(f"() => document.body.dataset.at !== '{first}'", timeout=10000)
    result["updated"] = True
    result["reloaded"] = page.evaluate("() => window.sameDocument !== true")
    result["camera"] = page.evaluate(CAMERA)
    result["warnings"] = page.eval_on_selector_all(".w b", "els => els.map(e => e.textContent)")
    result["lines"] = page.eval_on_selector_all(
        "#box dt", "els => els.map(e => e.textContent + ': ' + e.nextSibling.textContent)"
    )
    result["overflow"] = page.evaluate(OVERFLOW)
    if "screenshot" in options:
        page.screenshot(path=options["screenshot"], full_page=False)
    result["foreign"] = foreign
    return result


def main() -> None:
    config, data_dir = sys.argv[1:3]
    options = dict(a[2:].split("=", 1) for a in sys.argv[3:] if "=" in a)
    result: dict[str, object] = {"error": ""}
    with running_edged(config, data_dir) as base, sync_playwright() as playwright:
        token = (Path(data_dir) / "admin.token").read_text().strip()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        try:
            result.update(crew_screen(page, base, token, options))
        except Error as error:
            result["error"] = str(error)
            result["page"] = page.content()[:500]
        browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
