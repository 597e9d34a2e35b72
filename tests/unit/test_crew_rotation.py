"""A new admin token ends the crew's sessions (review of #19, finding 12): a cookie from a login
under one token opens nothing once the box runs with another, over the same data dir."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edged.web.app import create_app
from edged.web.context import WebServices
from tests.web_context import web_context


def _services(data_dir: Path, token: str) -> WebServices:
    """The web services over `data_dir`, where the crew's secret is kept across the restart."""
    return dataclasses.replace(web_context(data_dir, token=token), data_dir=data_dir)


async def _log_in(client: TestClient[Any, Any], token: str) -> str:
    origin = str(client.make_url("")).rstrip("/")
    answer = await client.post(
        "/crew/login", data={"token": token}, headers={"Origin": origin}, allow_redirects=False
    )
    assert answer.status == 303, await answer.text()
    return answer.cookies["edged_crew"].value


async def _state(client: TestClient[Any, Any], value: str) -> int:
    answer = await client.get("/crew/state", headers={"Cookie": f"edged_crew={value}"})
    return answer.status


async def test_a_new_admin_token_ends_every_crew_session(tmp_path: Path) -> None:
    app = create_app(_services(tmp_path, "first-token-0123456789"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        value = await _log_in(client, "first-token-0123456789")
        assert await _state(client, value) == 200
    app = create_app(_services(tmp_path, "second-token-0123456789"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert await _state(client, value) == 401
        assert await _state(client, await _log_in(client, "second-token-0123456789")) == 200
