"""A phone (Chromium at 390x844, a phone's autoplay rules) signs up on /join and its
confirmation page plays the exclusive clip at once, muted and inline; the pictures of the join
and confirmation pages (EDGED_SCREENSHOTS=docs makes the README's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.test_browser import picture, run_in_namespace
from tests.support import loopback_config, run_edged

pytestmark = pytest.mark.integration


@pytest.mark.timeout(150)
def test_a_phone_signs_up_and_the_exclusive_clip_plays_at_once(tmp_path: Path) -> None:
    from tests.clips import make_clip

    clip = make_clip(tmp_path / "backstage.mp4", seconds=4, size="640x360", audio=True)
    data_dir = tmp_path / "data"
    added = run_edged("cache", "--data-dir", str(data_dir), "add", str(clip), "--pin")
    assert added.returncode == 0, added.stderr
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "media": {"test_pattern": "off"},
        "guest": {"title": "Summer Pop-up"},
    }
    config.write_text(loopback_config("box", tables))
    join_shot, welcome_shot = picture(tmp_path, "join-page.png"), picture(tmp_path, "joined.png")
    outcome = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.join_in_chromium",
        str(config),
        str(data_dir),
        clip.name,
        f"--join={join_shot}",
        f"--welcome={welcome_shot}",
    )
    assert outcome["error"] == "", outcome
    assert outcome["patched"] == 200, outcome
    assert outcome["before"] == 403, outcome  # exclusive: no bytes without the cookie
    assert outcome["heading"] == "You're in, Ada!", outcome
    assert outcome["video"] == {
        "autoplay": True,
        "muted": True,
        "playsinline": True,
        "src": f"/assets/{clip.name}",
    }, outcome
    assert float(outcome["played"]) >= 1.0, outcome  # type: ignore[arg-type]
    assert outcome["after"] == 200, outcome
    for shot in (join_shot, welcome_shot):
        assert shot.read_bytes().startswith(b"\x89PNG")
