"""Sign up on a running edged's /join in headless Chromium as a phone (390x844, a phone's
autoplay rules) and watch the confirmation page play the exclusive clip.

Run inside a network namespace of the test's own (tests/integration/test_guest_browser.py).
Usage: python -m tests.browser.join_in_chromium CONFIG DATA_DIR CLIP [--join=PNG] [--welcome=PNG]
  CLIP: a clip in the box's cache, marked exclusive here through PATCH /api/v1/assets/CLIP.
Prints one JSON line: {"before": status of the clip's bytes without the cookie, "heading": the
confirmation's title, "video": {"autoplay", "muted", "playsinline", "src"}, "played": the
clip's time once it played on (or 0), "after": status of the clip's bytes with the cookie,
"error": str}.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Error, Page, sync_playwright

from tests.browser.page_in_chromium import (
    CHROMIUM,
    FIRST_FRAME,
    FLAGS,
    PHONE_AUTOPLAY,
    running_edged,
)

PLAYS_ON = """() => new Promise((resolve) => {
  const video = document.querySelector('video');
  const check = () => video.currentTime >= 1.0 ? resolve(video.currentTime) : null;
  video.addEventListener('timeupdate', check);
  check();
  setTimeout(() => resolve(video.currentTime), 10000);
})"""
VIDEO = """() => { const v = document.querySelector('video');
  return {autoplay: v.autoplay, muted: v.muted, playsinline: v.playsInline,
          src: v.getAttribute('src')}; }"""


def status(url: str, headers: dict[str, str], method: str = "GET", body: bytes = b"") -> int:
    request = urllib.request.Request(url, data=body or None, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 http only
            response.read(1)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def sign_up(page: Page, base: str, clip: str, options: dict[str, str]) -> dict[str, object]:
    result: dict[str, object] = {}
    page.goto(f"{base}/join")
    if "join" in options:
        page.screenshot(path=options["join"], full_page=False)
    page.fill("#email", "ada@example.org")
    page.fill("#name", "Ada")
    page.check("input[name=consent]")
    with page.expect_navigation():
        page.click("button[type=submit]")
    result["heading"] = page.inner_text("h1")
    result["video"] = page.evaluate(VIDEO)
    page.evaluate(FIRST_FRAME)
    result["played"] = page.evaluate(PLAYS_ON)
    if "welcome" in options:
        page.screenshot(path=options["welcome"], full_page=False)
    cookies = page.context.cookies()
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
    result["after"] = status(f"{base}/assets/{clip}", {"Cookie": cookie})
    return result


def main() -> None:
    config, data_dir, clip = sys.argv[1:4]
    options = dict(a[2:].split("=", 1) for a in sys.argv[4:] if "=" in a)
    flags = [PHONE_AUTOPLAY if f.startswith("--autoplay-policy=") else f for f in FLAGS]
    result: dict[str, object] = {"error": ""}
    with running_edged(config, data_dir) as base:
        token = (Path(data_dir) / "admin.token").read_text().strip()
        crew = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        patched = status(f"{base}/api/v1/assets/{clip}", crew, "PATCH", b'{"exclusive": true}')
        result["patched"] = patched
        result["before"] = status(f"{base}/assets/{clip}", {})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
            page = browser.new_page(viewport={"width": 390, "height": 844})
            try:
                result.update(sign_up(page, base, clip, options))
            except Error as error:
                result["error"] = str(error)
                result["page"] = page.content()[:300]  # what showed instead
            browser.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
