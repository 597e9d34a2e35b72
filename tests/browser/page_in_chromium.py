"""Open a page of a running edged in headless Chromium and wait for its video's first frame.

Run inside a network namespace of the test's own (see tests/integration/test_browser.py): the
daemon and Chromium talk over a veth pair there, nothing leaves the machine.
Usage: python -m tests.browser.page_in_chromium CONFIG DATA_DIR PATH [--phone]
  --phone: WebRTC host candidates are mDNS names, as on phones (Chromium's default), instead of
  the plain addresses the other runs offer.
  --screenshot=PNG: a picture of the page once it has played, as a phone (390x844) shows it.
  --landing=PNG: then a picture of the landing page (/), its posters loaded.
  --hold-segment=next: the first live HLS media segment asked for after the first frame gets no
  answer (a request lost on the venue's Wi-Fi): the player stalls unless the page restarts it.
  --sound=element|stream: under a phone's autoplay rules (sound only after a tap), tap the page's
  "Tap for sound" button and listen with an AudioContext analyser, fed by the video element
  (createMediaElementSource: silent while muted) or by its WebRTC stream (createMediaStreamSource).
Prints one JSON line: {"played": bool, "first_frame_ms": float | null, "error": str,
"played_seconds": how far playback went (it waits up to 10 s for 1.5 s), "player": the video
element's position, ready state, buffered ranges and error then (why a run stopped playing),
"control": whether the "Tap for sound" button showed once it had played,
"audio_bytes": the audio Chromium had decoded by then (webkitAudioDecodedByteCount),
"reported": the page's first-frame reports the daemon counted, by kind,
"sound": with --sound, {"before": ..., "after": ...} the tap, each {"muted": video.muted,
"control": button shown, "peak": loudest sample heard, "frequency": loudest FFT bin in Hz}}.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import TextIO

from playwright.sync_api import Error, Page, Route, sync_playwright

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
# A phone's rules: media plays unasked only muted, sound needs the guest's tap.
PHONE_AUTOPLAY = "--autoplay-policy=user-gesture-required"
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
# After a segment request is held: how much the player had buffered ahead then, and how much
# media it presented since (frame to frame, a restart's jump left out), up to `more` s past
# what was buffered or 15 s.
PLAYS_PAST = """(more) => new Promise((resolve) => {
  const video = document.querySelector('video'), ranges = video.buffered;
  const ahead = ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : 0;
  let progressed = 0, last = null;
  const done = () => resolve({ahead, progressed});
  const frame = (now, meta) => {
    const step = last === null ? 0 : meta.mediaTime - last;
    if (step > 0 && step < 0.5) progressed += step;
    last = meta.mediaTime;
    if (progressed >= ahead + more) done(); else video.requestVideoFrameCallback(frame);
  };
  video.requestVideoFrameCallback(frame);
  setTimeout(done, 15000);
})"""
SOUND_BUTTON = "Tap for sound"
AUDIO_BYTES = "() => document.querySelector('video').webkitAudioDecodedByteCount"
# Where the player is: for a run that stopped playing.
PLAYER = """() => {
  const video = document.querySelector('video'), ranges = video.buffered;
  const buffered = Array.from({length: ranges.length}, (_, i) => [ranges.start(i), ranges.end(i)]);
  return {currentTime: video.currentTime, readyState: video.readyState, paused: video.paused,
    buffered, error: video.error && video.error.message, src: video.currentSrc};
}"""
LISTEN = """(fromStream) => {
  const video = document.querySelector('video');
  const context = new AudioContext();
  const source = fromStream
    ? context.createMediaStreamSource(video.srcObject)
    : context.createMediaElementSource(video);
  const analyser = context.createAnalyser();
  analyser.fftSize = 4096;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  analyser.connect(context.destination);
  window.edgedListener = {context, analyser};
  return context.resume();
}"""
# Listens while the video plays on for `seconds` of its own time (at most 10 s of the clock):
# the loudest sample heard, and the loudest FFT bin at that moment.
HEARD = """(seconds) => new Promise((resolve) => {
  const {context, analyser} = window.edgedListener;
  const video = document.querySelector('video');
  const wave = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  const until = video.currentTime + seconds, started = performance.now();
  let peak = 0, frequency = 0;
  const listen = () => {
    analyser.getFloatTimeDomainData(wave);
    const loudest = wave.reduce((top, sample) => Math.max(top, Math.abs(sample)), 0);
    if (loudest > peak) {
      peak = loudest;
      analyser.getFloatFrequencyData(spectrum);
      frequency = spectrum.indexOf(Math.max(...spectrum)) * context.sampleRate / analyser.fftSize;
    }
    if (video.currentTime < until && performance.now() - started < 10000) setTimeout(listen, 20);
    else resolve({muted: video.muted, peak, frequency});
  };
  listen();
})"""
READY = re.compile(r"ready: http://(?P<host>[^/]+)/")
REPORTED = re.compile(r'edged_player_first_frame_seconds_count\{kind="([a-z-]+)"\} ([0-9.]+)')


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 http only
            return str(response.read().decode())
    except OSError:
        return ""


def counted(base: str) -> dict[str, int]:
    """The first-frame reports the daemon has counted so far, by kind."""
    return {kind: int(float(n)) for kind, n in REPORTED.findall(fetch(base + "/metrics"))}


def reported(base: str, before: dict[str, int]) -> dict[str, int]:
    """The first-frame reports the daemon has counted since `before`, by kind (the page's
    beacon is sent after its first frame: asked again until one shows, for up to 5 s)."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 5
    while not any(counts.values()) and time.monotonic() < deadline:
        counts = {kind: n - before.get(kind, 0) for kind, n in counted(base).items()}
        time.sleep(0.1)
    return counts


def hear(page: Page, source: str) -> dict[str, object]:
    """Listen before and after tapping the page's sound button: muted, shown, peak, frequency."""
    button = page.get_by_role("button", name=SOUND_BUTTON)
    button.wait_for(state="visible", timeout=10000)
    page.evaluate(LISTEN, source == "stream")
    before = {**page.evaluate(HEARD, 0.5), "control": button.is_visible()}
    button.click()  # a real tap: the guest's gesture that lets sound play
    button.wait_for(state="hidden", timeout=5000)
    after = {**page.evaluate(HEARD, 1.0), "control": button.is_visible()}
    return {"before": before, "after": after}


def past_the_hold(page: Page, holder: Holder) -> dict[str, float]:
    """Once the held request is out: what PLAYS_PAST sees (1.5 s past the buffer asked)."""
    deadline = time.monotonic() + 10
    while not holder.held and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # lets Playwright route the player's requests meanwhile
    return dict(page.evaluate(PLAYS_PAST, 1.5)) if holder.held else {}


class Holder:
    """Leaves the first media segment request after `arm()` unanswered (kept), passes the rest."""

    def __init__(self, page: Page) -> None:
        self.armed = False
        self.held: list[Route] = []
        page.route("**/segment-*.m4s", self._route)

    def arm(self) -> None:
        self.armed = True

    def _route(self, request: Route) -> None:
        if self.armed and not self.held:
            self.held.append(request)
        else:
            request.continue_()


def watch(page: Page, base: str, path: str, options: dict[str, str]) -> dict[str, object]:
    """Open the page, wait for its first frame and 1.5 s of playback, then what was asked."""
    result: dict[str, object] = {"played": False, "first_frame_ms": None, "error": ""}
    holder = Holder(page) if "hold-segment" in options else None
    before = counted(base)  # a daemon that served pages before: this page's reports only
    page.goto(base + path)
    try:
        result["first_frame_ms"] = round(page.evaluate(FIRST_FRAME), 1)
        result["played"] = True
        if holder:
            holder.arm()
            result["past_the_hold"] = past_the_hold(page, holder)
        result["played_seconds"] = round(page.evaluate(PLAYS_ON), 2)
        result["player"] = page.evaluate(PLAYER)
        result["held"] = len(holder.held) if holder else 0
        result["control"] = page.get_by_role("button", name=SOUND_BUTTON).is_visible()
        result["audio_bytes"] = page.evaluate(AUDIO_BYTES)
        if "screenshot" in options:
            page.screenshot(path=options["screenshot"])
        result["reported"] = reported(base, before)
        if "sound" in options:
            result["sound"] = hear(page, options["sound"])
        if "landing" in options:
            page.goto(base + "/", wait_until="load")
            page.screenshot(path=options["landing"])
    except Error as error:
        result["error"] = str(error)
    return result


def _relay(stream: TextIO) -> None:
    for line in stream:
        sys.stderr.write(line)


@contextlib.contextmanager
def running_edged(config: str, data_dir: str) -> Iterator[str]:
    """edged run on `config` and `data_dir`: its base URL once it says it is ready; stopped on
    the way out (SystemExit if it ends before it is ready)."""
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", config, "--data-dir", data_dir],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if match := READY.search(line):
                # The rest of its log is read (and shown) as it comes: a pipe left unread
                # would stall the daemon once 64 KiB of log filled it.
                threading.Thread(target=_relay, args=(daemon.stderr,), daemon=True).start()
                yield f"http://{match.group('host')}"
                return
        raise SystemExit("edged did not start")
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


def launch_flags(flags: list[str]) -> list[str]:
    """Chromium's flags for a run with `flags`: plain candidates unless --phone, a phone's
    autoplay rules with --sound."""
    chosen = FLAGS if "--phone" in flags else [*FLAGS, PLAIN_CANDIDATES]
    if any(flag.startswith("--sound=") for flag in flags):
        chosen = [PHONE_AUTOPLAY if f.startswith("--autoplay-policy=") else f for f in chosen]
    return chosen


def main() -> None:
    config, data_dir, path = sys.argv[1:4]
    options = dict(a[2:].split("=", 1) for a in sys.argv[4:] if "=" in a)
    with running_edged(config, data_dir) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=launch_flags(sys.argv[4:])
        )
        page = browser.new_page(viewport={"width": 390, "height": 844})
        result = watch(page, base, path, options)
        browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
