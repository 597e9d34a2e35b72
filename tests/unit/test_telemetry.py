"""Guests' first-frame reports: what a beacon may say, and the one open POST under /api/."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edged.web.app import create_app
from edged.web.context import METRICS
from edged.web.telemetry import FIRST_FRAME_BEACON, MAX_BODY, FirstFrame, parse_first_frame
from tests.web_context import web_context


def test_a_report_names_a_known_kind_and_a_bounded_time() -> None:
    assert parse_first_frame(b'{"kind": "watch", "seconds": 0.25}') == FirstFrame("watch", 0.25)
    assert parse_first_frame(b'{"kind": "live-whep", "seconds": 60}') == FirstFrame(
        "live-whep", 60.0
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "send JSON"),
        (b"\xff\xfe", "send JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"kind": "vod", "seconds": 1}', "kind is one of"),
        (b'{"kind": "watch"}', "seconds is a number"),
        (b'{"kind": "watch", "seconds": "1"}', "seconds is a number"),
        (b'{"kind": "watch", "seconds": true}', "seconds is a number"),
        (b'{"kind": "watch", "seconds": 0}', "over 0"),
        (b'{"kind": "watch", "seconds": -1}', "over 0"),
        (b'{"kind": "watch", "seconds": 61}', "at most 60"),
        (b'{"kind": "watch", "seconds": 1e999}', "over 0"),
        (json.dumps({"kind": "watch", "seconds": 1, "pad": "x" * MAX_BODY}).encode(), "at most"),
    ],
)
def test_anything_else_is_refused_with_a_short_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_first_frame(body)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(web_context(tmp_path))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def observed(client: TestClient[Any, Any], kind: str) -> float | None:
    registry = client.app[METRICS].registry
    return registry.get_sample_value("edged_player_first_frame_seconds_count", {"kind": kind})


async def test_a_guest_page_reports_without_a_token_into_the_histogram(
    client: TestClient[Any, Any],
) -> None:
    assert observed(client, "live-whep") == 0
    body = json.dumps({"kind": "live-whep", "seconds": 0.21})
    response = await client.post(FIRST_FRAME_BEACON, data=body)
    assert response.status == 204
    assert observed(client, "live-whep") == 1
    registry = client.app[METRICS].registry
    labels = {"kind": "live-whep", "le": "0.3"}
    assert registry.get_sample_value("edged_player_first_frame_seconds_bucket", labels) == 1


async def test_a_bad_report_is_a_400_with_one_line_and_counts_nothing(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edged.web.telemetry"):
        response = await client.post(FIRST_FRAME_BEACON, data=b'{"kind": "x", "seconds": 1}')
    assert response.status == 400
    assert "kind is one of" in (await response.json())["error"]
    assert len([r for r in caplog.records if r.name == "edged.web.telemetry"]) == 1
    assert all(observed(client, kind) == 0 for kind in ("live-whep", "live-hls", "watch"))


async def test_only_the_report_is_open_every_other_post_still_needs_the_token(
    client: TestClient[Any, Any],
) -> None:
    assert (await client.post(FIRST_FRAME_BEACON + "x", data=b"{}")).status == 401
    assert (await client.put(FIRST_FRAME_BEACON, data=b"{}")).status == 401
    assert (await client.post("/api/v1/reload")).status == 401
