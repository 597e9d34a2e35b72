"""page_in_chromium's runs one after another in one process: one Playwright, one Chromium per
set of launch flags, a fresh browser context (its own cookies, cache and page) for each run.

Run inside a network namespace of the module's own (see tests/integration/test_browser.py).
Usage: python -m tests.browser.page_server
Reads one request a line on stdin, {"id": ID, "config": CONFIG, "data_dir": DATA_DIR, "path":
PATH, "flags": [page_in_chromium's flags]}, and answers each with one JSON line, {"id": ID,
"outcome": what page_in_chromium prints}. A run on the config and data dir of the run before
meets the same daemon (the page's first-frame reports are counted from what that daemon had
counted when it opened); any other config or data dir stops that daemon and starts one of its
own. Ends at the end of its input."""

from __future__ import annotations

import contextlib
import json
import sys

from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.page_in_chromium import CHROMIUM, fetch, launch_flags, running_edged, watch


class Daemon:
    """The one edged running, kept from one run to the next on the same config and data dir."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._key: tuple[str, str] | None = None
        self._base = ""

    def base(self, config: str, data_dir: str) -> str:
        """The base URL of edged on `config` and `data_dir` (started unless it still answers)."""
        if self._key != (config, data_dir) or not fetch(self._base + "/healthz"):
            self.close()
            self._base = self._stack.enter_context(running_edged(config, data_dir))
            self._key = (config, data_dir)
        return self._base

    def close(self) -> None:
        self._stack.close()
        self._key = None


def serve(playwright: Playwright, daemon: Daemon) -> None:
    browsers: dict[tuple[str, ...], Browser] = {}
    for line in sys.stdin:
        request = json.loads(line)
        flags: list[str] = request["flags"]
        base = daemon.base(request["config"], request["data_dir"])
        args = tuple(launch_flags(flags))
        if args not in browsers:
            browsers[args] = playwright.chromium.launch(executable_path=CHROMIUM, args=list(args))
        context = browsers[args].new_context(viewport={"width": 390, "height": 844})
        options = dict(flag[2:].split("=", 1) for flag in flags if "=" in flag)
        try:
            outcome = watch(context.new_page(), base, request["path"], options)
        finally:
            context.close()
        print(json.dumps({"id": request["id"], "outcome": outcome}), flush=True)
    for browser in browsers.values():
        browser.close()


def main() -> None:
    daemon = Daemon()
    try:
        with sync_playwright() as playwright:
            serve(playwright, daemon)
    finally:
        daemon.close()


if __name__ == "__main__":
    main()
