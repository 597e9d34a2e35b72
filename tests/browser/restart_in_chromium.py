"""Play a live page of a running edged over HLS in headless Chromium until its video has played
`goal` seconds, across the restarts of its stream (the player's own HLS, as on the page).

Usage: python -m tests.browser.restart_in_chromium URL GOAL
Prints one JSON line: {"reached": the video's position at the end (it waits up to 40 s for
`goal`), "went_back": how often that position went back (playback started over: what a player
does with a playlist whose numbering went back), "error": the video element's error, if any}.
"""

from __future__ import annotations

import json
import sys

from playwright.sync_api import sync_playwright

from tests.browser.page_in_chromium import CHROMIUM, FLAGS

PLAYS_TO = """(goal) => new Promise((resolve) => {
  const video = document.querySelector('video');
  let last = 0, wentBack = 0;
  const done = () => resolve({
    reached: video.currentTime, went_back: wentBack, error: video.error ? video.error.message : ''
  });
  video.addEventListener('timeupdate', () => {
    if (video.currentTime < last - 0.25) wentBack++;
    last = video.currentTime;
    if (video.currentTime >= goal) done();
  });
  setTimeout(done, 40000);
})"""


def main() -> None:
    url, goal = sys.argv[1], float(sys.argv[2])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        result = page.evaluate(PLAYS_TO, goal)
        browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
