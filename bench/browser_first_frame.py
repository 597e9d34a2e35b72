"""Navigation to first presented frame in headless Chromium: edged's pages beside bare pages.

What a guest's phone does, measured in Debian's Chromium (driven by Playwright): a fresh browser
context per visit, a phone viewport (390x844), and the time from navigation start to the first
frame the page presents (`requestVideoFrameCallback`'s presentationTime). Cases, alternated in
each round so a slow moment of the machine hits them all alike:

- `/live/<stream>` as the page chooses (the default path), `?via=whep` and `?via=hls`;
- `/watch/<clip>`: a pinned 1080p clip from the cache;
- the references, served by nginx in the same run: a bare `<video autoplay muted>` page on the
  very same prepared bytes of the clip, and one playing a clip the live stream's size.

Everything runs inside a network namespace of its own (a veth pair, 10.78.0.1 and .2), because
WebRTC needs an interface that is not loopback: nothing leaves the machine.

Usage: python bench/browser_first_frame.py [--runs 7]     (needs chromium and nginx)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import Browser, sync_playwright  # noqa: E402

from tests.browser.page_in_chromium import CHROMIUM, FLAGS  # noqa: E402  (mDNS candidates on)
from tests.clips import make_clip  # noqa: E402
from tests.support import launch_edged, loopback_config  # noqa: E402

HOST = "10.78.0.1"
NAMESPACE = (
    "ip link set lo up && ip link add v0 type veth peer name v1 && "
    f"ip addr add {HOST}/24 dev v0 && ip addr add 10.78.0.2/24 dev v1 && "
    'ip link set v0 up && ip link set v1 up && exec "$@"'
)
INSIDE = "EDGED_BENCH_IN_NAMESPACE"
# Installed before any script of the page runs: the first frame the page's video presents, in
# milliseconds after navigation start (the page's time origin).
FIRST_FRAME_HOOK = """
window.__firstFrame = new Promise((resolve) => {
  const hook = (video) => video.requestVideoFrameCallback(
    (now, meta) => resolve(meta.presentationTime || now));
  const found = () => document.querySelector('video');
  if (found()) { hook(found()); return; }
  new MutationObserver((_, observer) => {
    if (found()) { observer.disconnect(); hook(found()); }
  }).observe(document, {childList: true, subtree: true});
});
"""
BARE = "<!doctype html><video autoplay muted playsinline src={src}></video>"
# With --variants: the watch page exactly as edged serves it, put on nginx (with the clip and
# watch.js at the same paths) whole and without one part each, to find what costs time beyond
# a bare page (the markup, or edged serving it).
VARIANTS = {
    "watch page as served (nginx)": [],
    "watch page - watch.js (nginx)": [r"<script defer src=/static/watch\.js></script>"],
    "watch page - preload (nginx)": [r" preload=auto"],
    "watch page - style (nginx)": [r"<style>.*?</style>"],
    "watch page - scripts (nginx)": [r"<script>.*?</script>", r"<script defer[^>]*></script>"],
    "watch page - all but video (nginx)": [
        r"<style>.*?</style>",
        r"<script.*?</script>",
        r"<button.*?</button>",
        r"<nav.*?</nav>",
    ],
}
STREAM_SIZE = "1280x720"
VISIT_SECONDS = 15


def visit(browser: Browser, url: str) -> float:
    """One guest: a fresh context, the page, milliseconds to its first presented frame (inf
    when none came within VISIT_SECONDS)."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        context.add_init_script(FIRST_FRAME_HOOK)
        page = context.new_page()
        page.goto(url, wait_until="commit")
        waited = page.evaluate(
            "(ms) => Promise.race([window.__firstFrame, new Promise(r => setTimeout(r, ms))])",
            VISIT_SECONDS * 1000,
        )
        return math.inf if waited is None else float(waited)
    finally:
        context.close()


def start_nginx(work: Path, root: Path) -> str:
    config = work / "nginx.conf"
    port = 8088
    config.write_text(
        f"user root; worker_processes 1; pid {work}/nginx.pid; error_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http { access_log off; sendfile on; tcp_nopush on;\n"
        "  types { video/mp4 mp4; text/html html; }\n"
        f"  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;\n"
        f"  fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi;\n"
        f"  scgi_temp_path {work}/scgi;\n"
        f"  server {{ listen {HOST}:{port}; root {root}; }} }}\n"
    )
    subprocess.run(["nginx", "-c", str(config)], check=True)
    return f"http://{HOST}:{port}"


def add_to_cache(data: Path, clip: Path, name: str) -> Path:
    command = [sys.executable, "-m", "edged", "cache", "--data-dir", str(data)]
    subprocess.run([*command, "add", str(clip), "--name", name, "--pin"], check=True, cwd=REPO)
    return data / "cache" / "assets" / f"{name}.mp4"


def watch_variants(pages: Path, edged: str, name: str, prepared: Path) -> dict[str, str]:
    """The watch page as edged serves it, and its cuts, on nginx with the clip and watch.js at
    the paths the page names; their paths on nginx by case."""
    with urllib.request.urlopen(f"{edged}/watch/{name}") as answer:  # noqa: S310 (http://)
        served = answer.read().decode()
    (pages / "assets").mkdir()
    shutil.copy(prepared, pages / "assets" / name)
    (pages / "static").mkdir()
    shutil.copy(REPO / "edged" / "web" / "static" / "watch.js", pages / "static")
    paths = {}
    for number, (case, cuts) in enumerate(VARIANTS.items()):
        markup = served
        for cut in cuts:
            markup, found = re.subn(cut, "", markup, flags=re.DOTALL)
            if not found:
                raise RuntimeError(f"{case}: the watch page has no {cut!r} any more")
        page = f"variant-{number}.html"
        (pages / page).write_text(markup)
        paths[case] = page
    return paths


def prepare(work: Path, variants: bool) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The daemon, nginx and the pages: the daemon's process and the cases' URLs."""
    options = {"preset": "veryfast", "g": "30", "keyint_min": "30", "bf": "0"}
    data = work / "data"
    pages = work / "www"
    pages.mkdir()
    for name, size in (("clip.mp4", "1920x1080"), ("stream-size.mp4", STREAM_SIZE)):
        clip = make_clip(work / name, seconds=6, size=size, codec_options=options)
        shutil.copy(add_to_cache(data, clip, name), pages / name)
        shutil.copy(data / "cache" / "posters" / f"{name}.jpg", pages / f"{name}.jpg")
        (pages / f"{name}.html").write_text(BARE.format(src=name))
    config = work / "edged.toml"
    config.write_text(
        loopback_config(
            "bench",
            {
                "http": {"host": HOST, "port": 8080},
                "mdns": {"enabled": False},
                "media": {"pattern_size": STREAM_SIZE, "pattern_fps": 30, "gop_seconds": 1.0},
                "live": {"ice_addresses": [HOST]},
            },
        )
    )
    daemon, edged = launch_edged(config, data)
    nginx = start_nginx(work, pages)
    cases = {
        "/live (default path)": f"{edged}/live/test-pattern",
        "/live?via=whep": f"{edged}/live/test-pattern?via=whep",
        "/live?via=hls": f"{edged}/live/test-pattern?via=hls",
        "bare page, stream-size clip (nginx)": f"{nginx}/stream-size.mp4.html",
        "/watch (pinned 1080p clip)": f"{edged}/watch/clip.mp4",
        "bare page, same bytes (nginx)": f"{nginx}/clip.mp4.html",
    }
    if variants:
        prepared = data / "cache" / "assets" / "clip.mp4.mp4"
        variant_pages = watch_variants(pages, edged, "clip.mp4", prepared)
        cases |= {case: f"{nginx}/{page}" for case, page in variant_pages.items()}
        # The bare page on nginx with the clip from edged: the bytes' server alone.
        (pages / "edged-bytes.html").write_text(BARE.format(src=f"{edged}/assets/clip.mp4"))
        cases["bare page, edged's bytes (nginx page)"] = f"{nginx}/edged-bytes.html"
    return daemon, cases


def measure(cases: dict[str, str], runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {case: [] for case in cases}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for url in cases.values():  # warm up: the stream has a segment, every file is read
            visit(browser, url)
        for _ in range(runs):
            order = list(cases)
            random.shuffle(order)
            for case in order:
                results[case].append(visit(browser, cases[case]))
                time.sleep(0.3)
        browser.close()
    return results


def report(results: dict[str, list[float]], runs: int) -> None:
    print(f"navigation start to first presented frame, headless Chromium, 390x844, {runs} runs")
    print(f"{'case':38} {'p50 ms':>8} {'p95 ms':>8} {'min ms':>8} {'p50 vs ref':>11} no frame")
    references = {
        "/live": "bare page, stream-size clip (nginx)",
        "bare page, stream": "bare page, stream-size clip (nginx)",
        "/watch": "bare page, same bytes (nginx)",
        "watch page": "bare page, same bytes (nginx)",
        "bare page, edged": "bare page, same bytes (nginx)",
        "bare page, same": "bare page, same bytes (nginx)",
    }
    for case, values in results.items():
        ordered = sorted(values)
        p50 = statistics.median(ordered)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        reference = next(ref for prefix, ref in references.items() if case.startswith(prefix))
        ratio = p50 / statistics.median(results[reference])
        failed = sum(1 for value in values if math.isinf(value))
        print(f"{case:38} {p50:8.1f} {p95:8.1f} {ordered[0]:8.1f} {ratio:11.2f} {failed:8}")
    print("goals: /live p50 <= 300 ms and p95 <= 500 ms, or within 1.1x of its bare page; ")
    print("       /watch within 1.1x of the bare page on the same bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="visits per case (>= 5)")
    parser.add_argument("--variants", action="store_true", help="the watch page's markup, cut")
    parser.add_argument("--only", default="", help="the cases whose name has this (and refs)")
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1":
        for tool in ("nginx", "unshare", "ip"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} not found")
        command = ["unshare", "--net", "--fork", "sh", "-c", NAMESPACE, "sh"]
        command += [sys.executable, *sys.argv]
        raise SystemExit(subprocess.run(command, env={**os.environ, INSIDE: "1"}).returncode)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        daemon, cases = prepare(work, args.variants)
        cases = {
            case: url
            for case, url in cases.items()
            if args.only in case or case.startswith("bare page")
        }
        try:
            results = measure(cases, args.runs)
        finally:
            subprocess.run(["nginx", "-c", str(work / "nginx.conf"), "-s", "quit"], check=False)
            daemon.terminate()
            daemon.wait(timeout=20)
    report(results, args.runs)


if __name__ == "__main__":
    main()
