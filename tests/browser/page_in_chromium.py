"""Open a page of a running edged in headless Chromium and wait for its video's first frame.

Run inside a network namespace of the test's own (see tests/integration/test_browser.py): the
daemon and Chromium talk over a veth pair there, nothing leaves the machine.
Usage: python -m tests.browser.page_in_chromium CONFIG DATA_DIR PATH [--phone]
  --phone: WebRTC host candidates are mDNS names, as on phones (Chromium's default), instead of
  the plain addresses the other runs offer.
  --screenshot=PNG: a picture of the page once it has played, as a phone (390x844) shows it.
  --landing=PNG: then a picture of the landing page (/), its posters loaded.
Prints one JSON line: {"played": bool, "first_frame_ms": float | null, "error": str,
"played_seconds": how far playback went (it waits up to 10 s for 1.5 s),
"reported": the page's first-frame reports the daemon counted, by kind}.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import Error, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]
PLAIN_CANDIDATES = "--disable-features=WebRtcHideLocalIpsWithMdns"
FIRST_FRAME = """() => new Promise((resolve, reject) => {
  const video = document.querySelector('video');
  video.requestVideoFrameCallback(() => resolve(performance.now()));
  setTimeout(() => reject(new Error('no frame in 20 s')), 20000);
})"""
PLAYS_ON = """() => new Promise((resolve) => {
  const video = document.querySelector('video');
  const check = () => video.currentTime >= 1.5 ? resolve(video.currentTime) : null;
  video.addEventListener('timeupdate', check);
  check();
  setTimeout(() => resolve(video.currentTime), 10000);
})"""
READY = re.compile(r"ready: http://(?P<host>[^/]+)/")
REPORTED = re.compile(r'edged_player_first_frame_seconds_count\{kind="([a-z-]+)"\} ([0-9.]+)')


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 http only
            return str(response.read().decode())
    except OSError:
        return ""


def reported(base: str) -> dict[str, int]:
    """The first-frame reports the daemon has counted, by kind (the page's beacon is sent
    after its first frame: asked again until one shows, for up to 5 s)."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 5
    while not any(counts.values()) and time.monotonic() < deadline:
        text = fetch(base + "/metrics")
        counts = {kind: int(float(n)) for kind, n in REPORTED.findall(text)}
        time.sleep(0.1)
    return counts


def main() -> None:
    config, data_dir, path = sys.argv[1:4]
    flags = FLAGS if "--phone" in sys.argv[4:] else [*FLAGS, PLAIN_CANDIDATES]
    options = dict(a[2:].split("=", 1) for a in sys.argv[4:] if "=" in a)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", config, "--data-dir", data_dir],
        stderr=subprocess.PIPE,
        text=True,
    )
    result: dict[str, object] = {"played": False, "first_frame_ms": None, "error": ""}
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            match = READY.search(line)
            if match:
                base = f"http://{match.group('host')}"
                break
        else:
            raise SystemExit("edged did not start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(base + path)
            try:
                result["first_frame_ms"] = round(page.evaluate(FIRST_FRAME), 1)
                result["played"] = True
                result["played_seconds"] = round(page.evaluate(PLAYS_ON), 2)
                if "screenshot" in options:
                    page.screenshot(path=options["screenshot"])
                if "landing" in options:
                    page.goto(base + "/", wait_until="load")
                    page.screenshot(path=options["landing"])
                result["reported"] = reported(base)
            except Error as error:
                result["error"] = str(error)
            browser.close()
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
