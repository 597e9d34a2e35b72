"""Headless Chromium on the landing page at a phone's viewport (390x844): a live stream and
clips as tiles (LIVE badge, title, duration), a clip added through the API appearing without a
reload, a clip title's <script> shown as text, within 30 KB, nothing fetched from elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from edged.guest.page import PAGE_BUDGET
from tests.browser.landing_in_chromium import HOSTILE_TITLE, NEW_TITLE
from tests.integration.test_browser import picture, run_in_namespace
from tests.support import loopback_config, run_edged

pytestmark = pytest.mark.integration


def sun_logo(path: Path, side: int = 64) -> Path:
    """An orange sun on a transparent ground, as a PNG (PyAV's encoder)."""
    import math

    import av

    middle, pixels = (side - 1) / 2, bytearray()
    for y in range(side):
        for x in range(side):
            radius = math.hypot(x - middle, y - middle)
            ray = (math.atan2(y - middle, x - middle) * 8 / math.pi) % 2 < 1
            shown = radius < side * 0.28 or (side * 0.36 < radius < side * 0.47 and ray)
            pixels += bytes((255, 90, 31, 255 if shown else 0))
    frame = av.VideoFrame(side, side, "rgba")
    frame.planes[0].update(bytes(pixels))
    encoder: Any = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = side, side, "rgba"
    path.write_bytes(b"".join(bytes(packet) for packet in encoder.encode(frame)))
    return path


@pytest.mark.timeout(150)
def test_the_landing_page_on_a_phone(tmp_path: Path) -> None:
    from tests.clips import make_clip

    data_dir = tmp_path / "data"
    for name, seconds in (("opening.mp4", 4), ("teaser.mp4", 3)):
        clip = make_clip(tmp_path / name, seconds=seconds, size="320x180")
        added = run_edged("cache", "--data-dir", str(data_dir), "add", str(clip), "--pin")
        assert added.returncode == 0, added.stderr
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "live": {"ice_addresses": ["10.77.0.1"]},
        "guest": {"title": "Summer Tour", "accent": "#ff5a1f"},
    }
    config.write_text(loopback_config("box", tables))
    encore = make_clip(tmp_path / "encore.mp4", seconds=2, size="640x360")
    shot = picture(tmp_path, "landing-page.png")
    outcome: dict[str, Any] = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.landing_in_chromium",
        str(config),
        str(data_dir),
        str(encore),
        f"--screenshot={shot}",
        "--hostile=opening.mp4",
        f"--logo={sun_logo(tmp_path / 'logo.png')}",
    )
    print(outcome)
    live, opening, teaser = outcome["tiles"]
    assert live["badges"] == ["LIVE"] and live["href"] == "/live/test-pattern", outcome
    assert opening["title"] == HOSTILE_TITLE and opening["duration"] == "0:04", outcome
    assert outcome["script_ran"] is False, outcome
    assert outcome["logo_width"] == 64, outcome  # uploaded through the API, decoded
    assert (teaser["title"], teaser["duration"]) == ("teaser", "0:03"), outcome  # "1:01": unit
    assert outcome["error"] == "" and NEW_TITLE in outcome["refreshed"], outcome
    assert outcome["reloaded"] is False, outcome
    assert 0 < outcome["page_bytes"] <= PAGE_BUDGET, outcome
    assert outcome["foreign"] == [], outcome
    assert outcome["overflow"] is False, outcome  # readable at 320 px: no sideways scrolling
    assert outcome["tallest"] < 300 and outcome["above_fold"] == 3, outcome
    assert shot.read_bytes().startswith(b"\x89PNG")
    # its player: the title from its facts and the next clip, after the first frame
    assert outcome["next"] == {"href": "/watch/teaser.mp4", "title": "Opening night"}, outcome
