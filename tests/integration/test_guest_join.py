"""/join and the crew's /api/v1/guests on the real app (in process): limits, escaping, cookie."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from edged.config import CampaignConfig, GuestConfig
from edged.guest.desk import GuestDesk
from edged.guest.members import COOKIE
from edged.web import join
from edged.web.app import create_app
from tests.web_context import TOKEN, web_context

CREW = {"Authorization": f"Bearer {TOKEN}"}
SCRIPT = "<script>alert(1)</script>"


def build(tmp_path: Path) -> tuple[web.Application, GuestDesk]:
    """The app as the daemon builds it, with a desk (blocking: SQLite, the metrics)."""
    services = web_context(tmp_path)
    config = GuestConfig(campaigns=(CampaignConfig(name="spring", source="poster"),))
    desk = GuestDesk(tmp_path, config, event=lambda: "gala", signups=services.metrics.guest.signups)
    app = create_app(services)
    join.install(app, desk)
    return app, desk


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app, desk = await asyncio.to_thread(build, tmp_path)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
    await desk.close()


async def form_of(client: TestClient[Any, Any], query: str = "") -> dict[str, str]:
    response = await client.get(f"/join{query}")
    assert response.status == 200
    # A browser sends "Origin: null" under no-referrer: the form's page allows its own origin.
    assert response.headers["Referrer-Policy"] == "same-origin"
    html = await response.text()
    return dict(re.findall(r'type=hidden name=(\w+) value="([^"]*)"', html))


async def post(client: TestClient[Any, Any], **fields: str) -> ClientResponse:
    origin = {"Origin": f"http://{client.host}:{client.port}"}
    return await client.post("/join", data=fields, headers=origin)


async def test_a_signup_gets_the_cookie_and_a_retry_makes_no_second_row(
    client: TestClient[Any, Any],
) -> None:
    hidden = await form_of(client, "?campaign=spring")
    assert hidden["campaign"] == "spring"
    fields = {**hidden, "email": "Ada@Example.org", "consent": "yes", "name": "Ada"}
    first = await post(client, **fields)
    assert first.status == 200
    cookie = first.cookies[COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert (await post(client, **fields)).status == 200  # a double submit
    other_form = {**(await form_of(client)), "email": "ada@example.org", "consent": "yes"}
    assert (await post(client, **other_form)).status == 200  # the same guest, a new form
    listed = await client.get("/api/v1/guests", headers=CREW)
    guests = (await listed.json())["guests"]
    assert [(g["email"], g["campaign"]) for g in guests] == [("ada@example.org", "spring")]
    scrape = (await (await client.get("/metrics")).text()).splitlines()
    assert 'edged_guest_signups_total{campaign="spring"} 1.0' in scrape
    assert "ada@example.org" not in "\n".join(scrape)


async def test_a_stored_script_in_a_name_is_shown_escaped(client: TestClient[Any, Any]) -> None:
    fields = {**(await form_of(client)), "email": "x@y.org", "consent": "yes", "name": SCRIPT}
    page = await (await post(client, **fields)).text()
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    exported = await client.get("/api/v1/guests?format=csv", headers=CREW)
    assert exported.content_type == "text/csv"
    assert SCRIPT in await exported.text()  # data, not a page: a CSV cell is never run
    listed = await client.get("/api/v1/guests", headers=CREW)
    assert listed.content_type == "application/json"
    assert listed.headers["Cache-Control"] == exported.headers["Cache-Control"] == "no-store"


async def test_a_known_email_typed_again_does_not_show_the_stored_name(
    client: TestClient[Any, Any],
) -> None:
    """Anyone may type a guest's address; the page greets with the name given now, never the
    one stored for it (review of #16)."""
    ada = {**(await form_of(client)), "email": "ada@example.org", "consent": "yes"}
    assert "Ada Lovelace" in await (await post(client, **ada, name="Ada Lovelace")).text()
    stranger = {**(await form_of(client)), "email": "ada@example.org", "consent": "yes"}
    page = await (await post(client, **stranger)).text()
    assert "Lovelace" not in page


@pytest.mark.parametrize(
    ("change", "headers", "status", "reason"),
    [
        ({"website": "spam"}, {}, 400, "refused"),
        ({"email": "e" * 250 + "@x.org"}, {}, 400, "at most 254"),
        ({"consent": ""}, {}, 400, "tick the box"),
        ({}, {"Origin": "http://evil.example"}, 403, "own page"),
        ({}, {"Sec-Fetch-Site": "cross-site"}, 403, "own page"),
    ],
)
async def test_a_bad_post_gets_a_4xx_a_reason_and_one_log_line_without_data(
    client: TestClient[Any, Any],
    caplog: pytest.LogCaptureFixture,
    change: dict[str, str],
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    fields = {**(await form_of(client)), "email": "z@y.org", "consent": "yes", **change}
    caplog.set_level(logging.INFO)
    caplog.clear()
    response = await client.post("/join", data=fields, headers=headers)
    assert response.status == status
    assert reason in await response.text()
    lines = [r for r in caplog.records if r.name.startswith("edged")]
    assert len(lines) == 1
    assert "@" not in lines[0].getMessage()
    assert (await (await client.get("/api/v1/guests", headers=CREW)).json())["guests"] == []


async def test_one_phone_is_rate_limited(client: TestClient[Any, Any]) -> None:
    statuses = []
    for n in range(7):
        fields = {**(await form_of(client)), "email": f"g{n}@y.org", "consent": "yes"}
        statuses.append((await post(client, **fields)).status)
    assert statuses == [200] * 5 + [429] * 2


async def test_the_crew_api_needs_the_token_and_deletes(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/api/v1/guests")).status == 401
    fields = {**(await form_of(client)), "email": "del@y.org", "consent": "yes"}
    assert (await post(client, **fields)).status == 200
    assert (await client.delete("/api/v1/guests/del@y.org")).status == 401
    assert (await client.delete("/api/v1/guests/DEL@y.org", headers=CREW)).status == 204
    assert (await client.delete("/api/v1/guests/del@y.org", headers=CREW)).status == 404
    assert (await (await client.get("/api/v1/guests", headers=CREW)).json())["guests"] == []


async def test_retention_prunes_signups_older_than_retention_days(
    client: TestClient[Any, Any],
) -> None:
    fields = {**(await form_of(client)), "email": "old@y.org", "consent": "yes"}
    assert (await post(client, **fields)).status == 200
    assert client.app is not None
    desk = client.app[join.GUEST_DESK]
    assert await desk.prune(time.time()) == 0
    assert await desk.prune(time.time() + 366 * 24 * 3600) == 1  # [guest] retention_days = 365
    assert await desk.guests() == []


async def test_a_refused_deletion_logs_no_address(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    wrong = {"Authorization": "Bearer " + "w" * 43}
    assert (await client.delete("/api/v1/guests/ada@example.org", headers=wrong)).status == 403
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("edged")]
    assert len(lines) == 1
    assert "ada" not in lines[0]
