"""/join and the crew's /api/v1/guests on the real app (in process): limits, escaping, cookie."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from edged.cache.store import AssetStore
from edged.config import CampaignConfig, GuestConfig
from edged.guest.desk import GuestDesk
from edged.guest.members import COOKIE
from edged.web import join
from edged.web.app import create_app
from tests.clips import make_clip
from tests.web_context import TOKEN, web_context

CREW = {"Authorization": f"Bearer {TOKEN}"}
SCRIPT = "<script>alert(1)</script>"


def build(
    tmp_path: Path, *proxies: str, clips: AssetStore | None = None
) -> tuple[web.Application, GuestDesk]:
    """The app as the daemon builds it, with a desk (blocking: SQLite, the metrics)."""
    services = web_context(tmp_path, clips=clips)
    spring = CampaignConfig(name="spring", source="poster")
    config = GuestConfig(campaigns=(spring,), trusted_proxies=proxies)
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


async def signups_forwarded_for(client: TestClient[Any, Any], *hops: str) -> list[int]:
    """One sign-up per hop, each sent from 127.0.0.1 with `X-Forwarded-For: <hop>`."""
    statuses = []
    for hop in hops:
        fields = {**(await form_of(client)), "email": f"{secrets.token_hex(4)}@y.org"}
        headers = {"Origin": f"http://{client.host}:{client.port}", "X-Forwarded-For": hop}
        response = await client.post("/join", data={**fields, "consent": "yes"}, headers=headers)
        statuses.append(response.status)
    return statuses


async def test_behind_a_trusted_proxy_each_guest_has_a_bucket_of_their_own(
    tmp_path: Path,
) -> None:
    """[guest] trusted_proxies: the venue's phones behind one proxy do not share its 5 sign-ups
    (review of #16, finding 8); one phone behind it is still limited."""
    app, desk = await asyncio.to_thread(build, tmp_path, "127.0.0.1")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        crowd = [f"192.168.7.{n}" for n in range(1, 9)]
        assert await signups_forwarded_for(client, *crowd) == [200] * 8
        one = ["10.9.9.9, 192.168.8.1"] * 6  # what a phone writes itself is not believed
        assert await signups_forwarded_for(client, *one) == [200] * 5 + [429]
    await desk.close()


async def test_x_forwarded_for_from_an_untrusted_address_is_ignored(
    client: TestClient[Any, Any],
) -> None:
    crowd = [f"192.168.7.{n}" for n in range(1, 8)]
    assert await signups_forwarded_for(client, *crowd) == [200] * 5 + [429] * 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ada@exmaple.org", "ada@example.org"),  # the back button, a typo corrected
        ("ada@example.org", "bob@example.org"),  # two friends on one phone
    ],
)
async def test_a_used_form_with_another_email_is_409_and_loses_nothing(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, first: str, second: str
) -> None:
    """Review of #16, finding 6: the first row was answered "You're in" for the second address,
    which was never stored. Now a 409 says to reload; the reloaded form signs it up."""
    hidden = await form_of(client)
    assert (await post(client, **hidden, email=first, consent="yes")).status == 200
    caplog.set_level(logging.INFO)
    caplog.clear()
    again = await post(client, **hidden, email=second, consent="yes")
    assert again.status == 409
    assert await again.text() == "this form was already used; reload the page"
    assert COOKIE not in again.cookies
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("edged")]
    assert len(lines) == 1
    assert "@" not in lines[0]
    reloaded = await post(client, **(await form_of(client)), email=second, consent="yes")
    assert reloaded.status == 200
    listed = (await (await client.get("/api/v1/guests", headers=CREW)).json())["guests"]
    assert [guest["email"] for guest in listed] == [first, second]


def exclusive_store(tmp_path: Path) -> AssetStore:
    """An asset store holding one clip (blocking: PyAV)."""
    store = AssetStore(tmp_path / "cache", max_bytes=50 << 20)
    store.add(make_clip(tmp_path / "finale.mp4", seconds=1.0), "finale", pin=False, origin="t")
    return store


async def test_a_deleted_guests_cookie_no_longer_opens_the_exclusive_clips(
    tmp_path: Path,
) -> None:
    """The cookie's signature alone was checked: a guest deleted at their request still held
    the exclusive clips for 400 days."""
    store = await asyncio.to_thread(exclusive_store, tmp_path)
    app, desk = await asyncio.to_thread(build, tmp_path, clips=store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        patched = await client.patch(
            "/api/v1/assets/finale", json={"exclusive": True}, headers=CREW
        )
        assert patched.status == 200
        assert (await client.get("/assets/finale")).status == 403
        fields = {**(await form_of(client)), "email": "ada@example.org", "consent": "yes"}
        joined = await post(client, **fields)
        assert joined.status == 200
        member = {COOKIE: joined.cookies[COOKIE].value}
        assert (await client.get("/assets/finale", cookies=member)).status == 200
        deleted = await client.delete("/api/v1/guests/ada@example.org", headers=CREW)
        assert deleted.status == 204
        assert (await client.get("/assets/finale", cookies=member)).status == 403
    await desk.close()


async def test_the_crew_api_needs_the_token_and_deletes(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/api/v1/guests")).status == 401
    fields = {**(await form_of(client)), "email": "del@y.org", "consent": "yes"}
    assert (await post(client, **fields)).status == 200
    assert (await client.delete("/api/v1/guests/del@y.org")).status == 401
    assert (await client.delete("/api/v1/guests/DEL@y.org", headers=CREW)).status == 204
    assert (await client.delete("/api/v1/guests/del@y.org", headers=CREW)).status == 404
    assert (await (await client.get("/api/v1/guests", headers=CREW)).json())["guests"] == []


async def test_deleting_a_guest_sent_before_with_no_upstream_now_says_the_note_waits(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Review 16b, finding 4b: the answer was 204 and nothing told the crew that the erasure
    never reached the upstream (removed from the config since Ada's batch went up)."""
    fields = {**(await form_of(client)), "email": "ada@y.org", "consent": "yes"}
    assert (await post(client, **fields)).status == 200
    assert client.app is not None
    book = client.app[join.GUEST_DESK].book
    batch = await asyncio.to_thread(book.cut_batch, time.time())
    assert batch is not None
    await asyncio.to_thread(book.mark_queued, batch.name)  # sent while an upstream was set
    with caplog.at_level(logging.INFO, logger="edged"):
        response = await client.delete("/api/v1/guests/ada@y.org", headers=CREW)
    assert response.status == 200
    answer = await response.json()
    assert answer["deleted"] == 1 and "note waits" in answer["upstream"]
    [line] = [r.getMessage() for r in caplog.records if r.name.startswith("edged")]
    assert "waits for an upstream" in line and "ada" not in line


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
