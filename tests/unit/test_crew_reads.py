"""What a client without the admin token may read of the box's state: counts, not the names of
staged clips (review 16b, finding 2). The replicator's last pass and the upload queue name
clips (a finale fetched the day before its release) and guest batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edged.cache.upstream import counted_status
from edged.web.app import create_app
from tests.web_context import TOKEN, web_context

AUTH = {"Authorization": f"Bearer {TOKEN}"}
STAGED = "finale-reveal.mp4"
LAST_PASS: dict[str, Any] = {
    "manifest": "manifest.json",
    "passes": 3,
    "clips_here": 2,
    "fetched": [STAGED],
    "not_replicated": [{"name": "late.mp4", "kind": "no-room", "reason": "", "retry_in": 5}],
    "skipped": [{"index": 4, "name": "finale.mp4 ", "reason": "bad name"}],
    "last_error": f"1 no-room (late.mp4), fetched {STAGED}",
}


def test_a_tokenless_status_counts_the_clips_and_names_none() -> None:
    counted = counted_status(LAST_PASS)
    assert counted == {
        "manifest": "manifest.json",
        "passes": 3,
        "clips_here": 2,
        "fetched": 1,
        "not_replicated": 1,
        "skipped": 1,
        "last_error": "trouble: send the admin token for the clips it names",
    }
    assert counted_status({"manifest": "m", "passes": 0})["passes"] == 0  # before a pass
    assert counted_status({**LAST_PASS, "last_error": ""})["last_error"] == ""


async def test_no_body_a_tokenless_client_can_get_names_a_staged_clip(tmp_path: Path) -> None:
    app = create_app(web_context(tmp_path, replication=lambda: LAST_PASS))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async with client.get("/api/v1/status") as response:
            assert response.status == 200
            body = await response.json()
        assert body["replication"]["fetched"] == 1 and STAGED not in json.dumps(body)
        async with client.get("/api/v1/status", headers=AUTH) as response:
            assert (await response.json())["replication"]["fetched"] == [STAGED]  # the crew's
        async with client.get("/api/v1/uploads") as response:
            assert response.status == 401  # object keys and paths: the crew's
        async with client.get("/api/v1/uploads", headers=AUTH) as response:
            assert response.status == 503  # no uploader in this app; past the token
