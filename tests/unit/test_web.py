"""The aiohttp app in process with a real client: routes, the token guard, headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edged.errors import ConfigError
from edged.metrics import Metrics
from edged.web.app import create_app
from edged.web.context import CONTEXT, WebContext

TOKEN = "t" * 43


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    calls: list[str] = []

    async def reload() -> dict[str, Any]:
        calls.append("reload")
        if len(calls) > 1:
            raise ConfigError("edged.toml: node.nmae: unknown key")
        return {"reloaded": True, "applied": [], "restart_required": []}

    context = WebContext(
        version="0.1.0",
        node="box<1>",
        event="gala",
        metrics=Metrics(version="0.1.0", node="box", event="gala", data_dir=tmp_path),
        admin_token=TOKEN,
        reload=reload,
        data_dir=tmp_path,
    )
    async with TestClient(TestServer(create_app(context), host="127.0.0.1")) as test_client:
        yield test_client


async def test_guard_on_state_changing_calls(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/v1/reload")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.post("/api/v1/reload", headers={"Authorization": "Basic abc"})
    assert response.status == 401
    response = await client.post("/api/v1/reload", headers={"Authorization": "Bearer nope"})
    assert response.status == 403
    response = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    response = await client.post("/api/v1/reload", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 400
    assert "node.nmae: unknown key" in (await response.json())["error"]


async def test_unknown_state_changing_route_is_guarded_before_404(
    client: TestClient[Any, Any],
) -> None:
    assert (await client.delete("/api/v1/anything")).status == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.delete("/api/v1/anything", headers=headers)).status == 404


async def test_readiness_follows_subsystems(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert response.status == 503
    assert client.app is not None
    context = client.app[CONTEXT]
    context.subsystems["http"] = True
    response = await client.get("/readyz")
    assert response.status == 200


async def test_landing_page_escapes_and_is_small(client: TestClient[Any, Any]) -> None:
    response = await client.get("/")
    body = await response.text()
    assert response.status == 200
    assert "<h1>box&lt;1&gt;</h1>" in body
    assert "gala" in body
    assert len(body.encode()) < 4096
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_metrics_content_type(client: TestClient[Any, Any]) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "edged_disk_free_bytes" in await response.text()


async def test_huge_header_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"X-Big": "a" * 20000})
    assert response.status in (400, 431)
