"""The watch page's next-clip lookup when the guests' tiles do not come, on a running edged in
headless Chromium as a phone (390x844).

Run inside a network namespace of the test's own (tests/integration/test_watch_next_browser.py).
Usage: python -m tests.browser.watch_next_in_chromium CONFIG DATA_DIR CLIP
  CLIP: a clip in the box's cache. Its watch page is opened twice: the tiles' request cut
  ("aborted"), then answered 500 with a body that is not JSON ("broken").
Prints one JSON line: {"aborted": [...], "broken": [...]: the page's unhandled promise
rejections and uncaught errors in each case, "error": str}.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import Error, Page, Route, sync_playwright

from tests.browser.page_in_chromium import (
    CHROMIUM,
    FIRST_FRAME,
    FLAGS,
    PLAIN_CANDIDATES,
    running_edged,
)

TILES = "**/api/v1/guest/tiles"
# Before the page's scripts: note unhandled rejections, and count the page's fetches settled
# (two turns of the loop after their answer or failure, when a rejection would be reported).
WATCH_REJECTIONS = """
window.rejections = [];
addEventListener('unhandledrejection', (e) => window.rejections.push(String(e.reason)));
window.settled = 0;
const original = window.fetch;
window.fetch = (...args) => {
  const answer = original(...args);
  const done = () => setTimeout(() => setTimeout(() => { window.settled += 1; }, 0), 0);
  answer.then((r) => r.clone().text().then(done, done), done);
  return answer;
};
"""


def problems(page: Page, base: str, clip: str, answer: str) -> list[str]:
    """What the page left unhandled when the tiles' request was `answer`ed so."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def tiles(route: Route) -> None:
        if answer == "aborted":
            route.abort()
        else:
            route.fulfill(status=500, body="not json", content_type="text/plain")

    page.route(TILES, tiles)
    page.goto(f"{base}/watch/{clip}")
    page.evaluate(FIRST_FRAME)
    page.wait_for_function("() => window.settled >= 1", timeout=20000)
    return [*page.evaluate("() => window.rejections"), *errors]


def main() -> None:
    config, data_dir, clip = sys.argv[1:4]
    result: dict[str, object] = {"error": ""}
    with running_edged(config, data_dir) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, PLAIN_CANDIDATES]
        )
        try:
            for answer in ("aborted", "broken"):
                page = browser.new_page(viewport={"width": 390, "height": 844})
                page.add_init_script(WATCH_REJECTIONS)
                result[answer] = problems(page, base, clip, answer)
                page.close()
        except Error as error:
            result["error"] = str(error)
        browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
