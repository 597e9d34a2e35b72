"""Open the poster (/qr) of a running edged in headless Chromium at a phone's size, take its
picture, decode every QR code in the picture with Debian's zbarimg, and open the decoded link.

Run inside a network namespace of the test's own (tests/integration/test_browser.py): the daemon
listens on every address there (lo and a veth pair), nothing leaves the machine.
Usage: python -m tests.browser.poster_in_chromium CONFIG DATA_DIR [--shot=PNG] [PATH...]
  PATH: the poster pages to open (default /qr); --shot: where the first one's picture goes.
Prints one JSON line: {"posters": {PATH: {"status": int, "codes": [decoded text, ...],
"opened": {link: {"status": int, "title": str}}, "printed": {"pages": int, "size": [width,
height] in points}}}, "visits": {campaign: count}, "error": str}; "printed" is the page as
Chromium prints it to PDF at the size its @page asks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, Error, sync_playwright

from tests.browser.page_in_chromium import CHROMIUM, FLAGS

READY = re.compile(r"ready: http://[^:/]+:(?P<port>\d+)/")
PDF_PAGE = re.compile(rb"/Type\s*/Page\b")
PDF_BOX = re.compile(rb"/MediaBox\s*\[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]")
VISITS = re.compile(r'edged_guest_visits_total\{campaign="([^"]*)"\} ([0-9.]+)')


def decode(picture: Path) -> list[str]:
    """Every QR code zbarimg finds in the picture, as its text."""
    result = subprocess.run(
        ["zbarimg", "--quiet", "-Sdisable", "-Sqrcode.enable", str(picture)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.removeprefix("QR-Code:") for line in result.stdout.splitlines() if line]


def visits(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310 http
        return {name: float(n) for name, n in VISITS.findall(response.read().decode())}


def poster(browser: Browser, base: str, path: str, shot: Path) -> dict[str, object]:
    """The poster's picture decoded, and each decoded http(s) link opened as a phone would."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    response = page.goto(base + path, wait_until="load")
    page.screenshot(path=str(shot), full_page=True)
    codes = decode(shot)
    opened: dict[str, object] = {}
    for link in codes:
        if link.startswith(("http://", "https://")):
            answer = page.goto(link, wait_until="load")
            opened[link] = {"status": answer.status if answer else 0, "title": page.title()}
    page.goto(base + path, wait_until="load")
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    box = PDF_BOX.search(pdf)
    printed = {
        "pages": len(PDF_PAGE.findall(pdf)),
        "size": [round(float(box.group(1))), round(float(box.group(2)))] if box else [],
    }
    page.close()
    status = response.status if response else 0
    return {"status": status, "codes": codes, "opened": opened, "printed": printed}


def main() -> None:
    config, data_dir = sys.argv[1:3]
    options = dict(a[2:].split("=", 1) for a in sys.argv[3:] if a.startswith("--"))
    paths = [a for a in sys.argv[3:] if not a.startswith("--")] or ["/qr"]
    result: dict[str, object] = {"posters": {}, "visits": {}, "error": ""}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", config, "--data-dir", data_dir],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            if match := READY.search(line):
                base = f"http://127.0.0.1:{match.group('port')}"
                break
        else:
            raise SystemExit("edged did not start")
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as scratch:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                for number, path in enumerate(paths):
                    shot = Path(options["shot"]) if number == 0 and "shot" in options else None
                    target = shot or Path(scratch) / f"poster-{number}.png"
                    result["posters"][path] = poster(browser, base, path, target)  # type: ignore[index]
            except Error as error:
                result["error"] = str(error)
            browser.close()
        result["visits"] = visits(base)
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
