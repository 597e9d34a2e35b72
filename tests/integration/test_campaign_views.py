"""Clip views per campaign (#16 part 1) over HTTP, in process with a real asset store and a real
clip: a campaign's landing page hands its name on, the watch page's start report counts the
view under it; an unknown name counts as none, a name that is not a string is a 400."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edged.cache.store import AssetStore
from edged.config import CampaignConfig, GuestConfig
from edged.web.app import create_app
from edged.web.context import METRICS
from edged.web.telemetry import WATCH_BEACON, WATCH_GUARD
from tests.clips import make_clip
from tests.web_context import web_context

pytestmark = pytest.mark.integration

# From loopback, X-Forwarded-For names the phone: each report below is another phone's view.
GUEST = GuestConfig(
    campaigns=(CampaignConfig(name="flyer", source="poster"),), trusted_proxies=("127.0.0.1",)
)
VIEWS = "edged_guest_clip_views_total"


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    store = AssetStore(tmp_path / "cache", max_bytes=50 << 20)
    store.add(make_clip(tmp_path / "teaser.mp4", seconds=1.0), "teaser", pin=False, origin="t")
    return store


@pytest.fixture
async def client(tmp_path: Path, store: AssetStore) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(web_context(tmp_path, clips=store, guest=GUEST))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def views(client: TestClient[Any, Any], campaign: str) -> float | None:
    return client.app[METRICS].registry.get_sample_value(VIEWS, {"campaign": campaign})


async def report(client: TestClient[Any, Any], kind: str, **fields: object) -> int:
    """One report of a new view (a token as its watch page carries) from a new phone."""
    token = client.app[WATCH_GUARD].issue("teaser")
    body = {"id": token, "clip": "teaser", "report": kind, "seconds": 0, **fields}
    phone = {"X-Forwarded-For": f"10.0.{int(token[:2], 16)}.{int(token[2:4], 16)}"}
    async with client.post(WATCH_BEACON, data=json.dumps(body).encode(), headers=phone) as r:
        return r.status


async def test_a_tagged_landing_then_a_tagged_view_is_counted(
    client: TestClient[Any, Any],
) -> None:
    assert (views(client, "flyer"), views(client, "none")) == (0, 0)  # from the start
    # By its UTM tags alone the landing page knows the campaign, and hands its name on.
    async with client.get("/?utm_source=poster&utm_campaign=flyer") as response:
        landing = await response.text()
    assert "sessionStorage.setItem('campaign',\"flyer\")" in landing
    assert await report(client, "start", campaign="flyer") == 204
    assert await report(client, "watched", seconds=3, campaign="flyer") == 204  # not a view
    assert await report(client, "start") == 204  # untagged
    assert (views(client, "flyer"), views(client, "none")) == (1, 1)
    async with client.get("/watch/teaser?campaign=flyer") as response:
        assert response.status == 200  # a QR straight to a clip: watch.js reads its link


async def test_an_unknown_campaign_counts_as_none_and_a_bad_one_is_refused(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with client.get("/?campaign=<b>free-text") as response:
        assert "sessionStorage" not in await response.text()
    assert await report(client, "start", campaign="free-text") == 204
    assert views(client, "none") == 1
    assert "free-text" not in client.app[METRICS].exposition().decode()
    with caplog.at_level(logging.INFO, logger="edged.web.telemetry"):
        assert await report(client, "start", campaign={"name": "flyer"}) == 400
    assert [r.getMessage() for r in caplog.records if r.name == "edged.web.telemetry"] == [
        "watch report refused: campaign is a campaign's name"
    ]
    assert (views(client, "flyer"), views(client, "none")) == (0, 1)
