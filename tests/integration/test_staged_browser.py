"""#16 parts 4 and 5 in Chromium as a phone (390x844): a staged clip is not on the landing page
and its bytes, watch page and poster answer 404 until its window opens (set through PATCH);
then the watch page's beacons are counted (a view, unmute, 10 s retained, the end of the view),
and its views by the campaign of the landing page it came from or of its own link."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.test_browser import run_in_namespace
from tests.support import loopback_config, run_edged

pytestmark = pytest.mark.integration


@pytest.mark.timeout(150)
def test_a_staged_clip_is_invisible_before_its_window_and_its_views_are_counted(
    tmp_path: Path,
) -> None:
    from tests.clips import make_clip

    clip = make_clip(tmp_path / "premiere.mp4", seconds=12, size="320x240", audio=True)
    data_dir = tmp_path / "data"
    added = run_edged("cache", "--data-dir", str(data_dir), "add", str(clip), "--pin")
    assert added.returncode == 0, added.stderr
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "media": {"test_pattern": "off"},
        "guest": {"campaigns": [{"name": "flyer"}, {"name": "radio"}]},
    }
    config.write_text(loopback_config("box", tables))
    outcome = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.staged_in_chromium",
        str(config),
        str(data_dir),
        clip.name,
    )
    assert outcome["error"] == "", outcome
    assert outcome["patched"] == [200, 200], outcome
    assert outcome["staged"] == {"tile": 0, "bytes": 404, "watch": 404, "poster": 404}, outcome
    assert outcome["opened"] == {"tile": 1, "bytes": 200, "watch": 200, "poster": 200}, outcome
    assert outcome["views"] == 1, outcome
    assert outcome["retained_10s"] == 1, outcome
    assert float(outcome["played"]) >= 10, outcome  # type: ignore[arg-type]
    assert outcome["ends"] == 1, outcome
    assert outcome["unmutes"] == 1, outcome
    # Counted by campaign: from the tagged landing page's tile, then from a tagged watch link.
    # (the second view is the same phone's within the box's window: sent, not counted again)
    assert outcome["campaign_views"] == {"flyer": 1, "radio": 0, "none": 0}, outcome
    assert outcome["radio_start"] == "radio", outcome
    assert outcome["reports_before_the_picture"] is True, outcome  # loaded with the poster
