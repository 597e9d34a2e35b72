"""Review of #16, finding 10: the watch page's lookup of the next clip (the guests' tiles,
after the first frame) had no .catch, so a failed request left an unhandled rejection in the
guest's browser. In Chromium: the request cut, then answered 500 with no JSON."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.test_browser import run_in_namespace
from tests.support import loopback_config, run_edged

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_the_next_clip_lookup_failing_leaves_nothing_unhandled(tmp_path: Path) -> None:
    from tests.clips import make_clip

    clip = make_clip(tmp_path / "opening.mp4", seconds=2, size="320x240")
    data_dir = tmp_path / "data"
    added = run_edged("cache", "--data-dir", str(data_dir), "add", str(clip))
    assert added.returncode == 0, added.stderr
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "media": {"test_pattern": "off"},
    }
    config.write_text(loopback_config("box", tables))
    outcome = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.watch_next_in_chromium",
        str(config),
        str(data_dir),
        clip.name,
    )
    assert outcome == {"error": "", "aborted": [], "broken": []}, outcome
