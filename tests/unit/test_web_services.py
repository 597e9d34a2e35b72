"""Each route reaches the one narrow interface it uses through a typed AppKey; an interface that
is absent is a subsystem that is not running (issue #13 item 2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edged.config import from_mapping
from edged.paths import OUTBOX
from edged.upload.setup import build_uploader, naming_for
from edged.web.adapters import JournalUploads
from edged.web.app import create_app
from edged.web.context import Readiness
from tests.web_context import TOKEN, web_context

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_readiness_needs_every_subsystem_up_and_no_failing_task() -> None:
    failing: dict[str, str] = {}
    readiness = Readiness(lambda: failing)
    assert not readiness.ready  # nothing has started yet
    readiness.starting("http")
    readiness.starting("media")
    readiness.started("http")
    assert not readiness.ready
    readiness.started("media")
    assert readiness.ready
    failing["replicator"] = "OSError: disk on fire"
    assert not readiness.ready
    assert readiness.failing_tasks() == {"replicator": "OSError: disk on fire"}


def test_app_state_holds_typed_keys_only(tmp_path: Path) -> None:
    app = create_app(web_context(tmp_path, device_report=dict, stream_status=list))
    assert all(isinstance(key, web.AppKey) for key in app)
    # the nine every app has (identity, readiness, metrics, token, reloader, the guest settings,
    # the event logo, the watch reports' guard and the crew screen's door), and the two reports
    assert len(app) == 11


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The app with none of the optional subsystems: no devices, media, clips or uploads."""
    async with TestClient(TestServer(create_app(web_context(tmp_path)), host="127.0.0.1")) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/devices", 503),
        ("GET", "/api/v1/streams", 503),
        ("GET", "/api/v1/uploads", 503),
        ("POST", "/api/v1/uploads", 503),
        ("POST", "/api/v1/uploads/1/retry", 503),
        ("GET", "/api/v1/assets", 503),
        ("GET", "/assets/clip.mp4", 503),
        ("GET", "/posters/clip.jpg", 503),
        ("GET", "/watch/clip.mp4", 503),
        ("GET", "/live/cam", 404),
        ("GET", "/live/cam/index.m3u8", 404),
        ("POST", "/live/cam/whep", 404),
        ("DELETE", "/live/cam/whep/abc", 404),
    ],
)
async def test_a_route_whose_subsystem_is_absent(
    bare: TestClient[Any, Any], method: str, path: str, status: int
) -> None:
    response = await bare.request(method, path, headers=AUTH)
    assert response.status == status


async def test_the_landing_page_and_status_without_optional_subsystems(
    bare: TestClient[Any, Any],
) -> None:
    page = await (await bare.get("/")).text()
    assert "Nothing to watch on this box yet" in page
    status = await (await bare.get("/api/v1/status")).json()
    assert status["replication"] is None and status["ready"] is False


@pytest.fixture
async def uploads(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The uploads API over a real uploader and journal with sync off."""
    config = from_mapping({})
    context = web_context(tmp_path)
    uploader = await asyncio.to_thread(
        build_uploader, config, tmp_path, "box", context.metrics.upload
    )
    context.uploads = JournalUploads(uploader, lambda: naming_for(config, "box"), tmp_path)
    try:
        async with TestClient(TestServer(create_app(context), host="127.0.0.1")) as client:
            yield client
    finally:
        uploader.journal.close()


async def test_the_upload_queue_lists_refuses_with_sync_off_and_retries_nothing_unknown(
    uploads: TestClient[Any, Any], tmp_path: Path
) -> None:
    listed = await (await uploads.get("/api/v1/uploads", headers=AUTH)).json()
    assert listed["upstream"] == {"configured": False, "up": False}
    (tmp_path / OUTBOX).mkdir()
    (tmp_path / OUTBOX / "reel.mp4").write_bytes(b"x")
    body = {"path": f"{OUTBOX}/reel.mp4"}
    response = await uploads.post("/api/v1/uploads", json=body, headers=AUTH)
    assert response.status == 400
    assert "sync is off" in (await response.json())["error"]
    response = await uploads.post("/api/v1/uploads", json={"path": "nope"}, headers=AUTH)
    assert response.status == 404
    for file_id in ("7", "9" * 30):
        response = await uploads.post(f"/api/v1/uploads/{file_id}/retry", headers=AUTH)
        assert response.status == 404
        assert (await response.json())["error"] == "no such upload"
