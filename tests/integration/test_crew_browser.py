"""Headless Chromium logs in to /crew at a phone's viewport (390x844): the camera's tile with its
fps, a live thumbnail and its sound's level, the doctor's warning that no upstream is configured
in plain words, the screen redrawn from a newer state without a reload, within its budget,
nothing fetched from another host (EDGED_SCREENSHOTS=docs makes the README's picture)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from edged.web.crew_page import PAGE_BUDGET
from tests.integration.test_browser import SINE, picture, run_in_namespace
from tests.support import loopback_config

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
def test_the_crew_screen_on_a_phone(tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "node": {"event": "summer-tour"},
        "media": {"audio_stand_in": SINE},  # a tone as the pattern's sound: a level to show
    }
    config.write_text(loopback_config("tent-a", tables))
    shot = picture(tmp_path, "crew-screen.png")
    outcome: dict[str, Any] = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.crew_in_chromium",
        str(config),
        str(tmp_path / "data"),
        f"--screenshot={shot}",
    )
    print(outcome)
    assert outcome["error"] == "", outcome
    assert outcome["login"] == "Crew: tent-a", outcome
    camera = outcome["camera"]
    assert camera["stream"] == "test-pattern" and camera["fps"].endswith("/15 fps"), outcome
    assert camera["thumbnail"] > 0, outcome  # the live poster, loaded
    assert camera["sound"].endswith("dBFS") and camera["meter"] > 0, outcome  # the tone's level
    assert "Footage is not being uploaded" in outcome["warnings"], outcome
    assert "Upstream: off: footage stays on the box" in outcome["lines"], outcome
    assert outcome["updated"] is True and outcome["reloaded"] is False, outcome
    assert 0 < outcome["page_bytes"] <= PAGE_BUDGET, outcome
    assert outcome["foreign"] == [], outcome
    assert outcome["overflow"] is False, outcome
    assert shot.read_bytes().startswith(b"\x89PNG")
