"""Staged release and watch telemetry over HTTP (#16 parts 4 and 5), in process with a real
asset store and a real clip: the gate on bytes, watch page and poster, PATCH of the facts, the
watch page's beacons, the clips' stats and the deferred script."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edged.cache.store import AssetStore
from edged.config import GuestConfig
from edged.guest.clips import format_time
from edged.guest.members import COOKIE, MEMBER_SECRET, sign
from edged.guest.telemetry import REPORT_BURST
from edged.web.app import create_app
from edged.web.context import METRICS
from edged.web.telemetry import WATCH_BEACON, WATCH_GUARD, WATCH_SCRIPT
from tests.clips import make_clip
from tests.web_context import TOKEN, web_context

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = b"s" * 32
# From loopback, X-Forwarded-For names the phone (a trusted proxy): each test phone its own client.
GUEST = GuestConfig(min_retention_10s=0.5, min_views=2, trusted_proxies=("127.0.0.1",))


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    store = AssetStore(tmp_path / "cache", max_bytes=50 << 20)
    for name in ("teaser", "other"):
        store.add(make_clip(tmp_path / f"{name}.mp4", seconds=1.0), name, pin=False, origin="t")
    return store


@pytest.fixture
async def client(tmp_path: Path, store: AssetStore) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(web_context(tmp_path, clips=store, guest=GUEST))
    app[MEMBER_SECRET] = SECRET
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def statuses(client: TestClient[Any, Any], name: str, **cookies: str) -> list[int]:
    """What a guest gets of clip `name`: its bytes (GET, HEAD), watch page, poster."""
    found = []
    for method, path in [
        ("GET", f"/assets/{name}"),
        ("HEAD", f"/assets/{name}"),
        ("GET", f"/watch/{name}"),
        ("GET", f"/posters/{name}.jpg"),
    ]:
        async with client.request(method, path, allow_redirects=False, cookies=cookies) as r:
            found.append(r.status)
    return found


async def patch(client: TestClient[Any, Any], name: str, body: object) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.patch(f"/api/v1/assets/{name}", data=data, headers=AUTH) as response:
        return response.status, await response.json()


async def listed(client: TestClient[Any, Any], name: str) -> dict[str, Any]:
    async with client.get("/api/v1/assets", headers=AUTH) as response:
        assets = (await response.json())["assets"]
    return dict(next(asset["facts"] for asset in assets if asset["name"] == name))


async def test_a_clip_outside_its_window_is_404_to_guests_and_listed_for_the_crew(
    client: TestClient[Any, Any],
) -> None:
    assert await statuses(client, "teaser") == [200, 200, 200, 200]
    later = format_time(time.time() + 3600)
    status, answer = await patch(client, "teaser", {"publish_at": later, "title": "<b>T</b>"})
    assert status == 200 and answer["facts"]["guest"] == "hidden", answer
    assert await statuses(client, "teaser") == [404, 404, 404, 404]
    assert await statuses(client, "other") == [200, 200, 200, 200]
    facts = await listed(client, "teaser")
    assert facts["publish_at"] == later and facts["title"] == "<b>T</b>"
    assert facts["guest"] == "hidden"
    async with client.get("/api/v1/assets") as response:  # a guest: the staged clip is not there
        shown = await response.json()
    names = [asset["name"] for asset in shown["assets"]]
    assert "teaser" not in names and "other" in names
    # nor in the total (review 16b, 9): the sum of what is listed
    assert shown["bytes"] == sum(asset["size"] for asset in shown["assets"])
    async with client.get("/api/v1/assets", headers=AUTH) as response:
        assert (await response.json())["bytes"] > shown["bytes"]  # the crew's: every clip
    # The window opens: set to the past by the crew, the clip is there at once.
    status, answer = await patch(client, "teaser", {"publish_at": "2020-01-01T00:00:00Z"})
    assert status == 200 and answer["facts"]["guest"] == "show", answer
    assert await statuses(client, "teaser") == [200, 200, 200, 200]
    # ... and closes.
    await patch(client, "teaser", {"unpublish_at": format_time(time.time() - 1)})
    assert await statuses(client, "teaser") == [404, 404, 404, 404]


async def test_an_exclusive_clip_is_403_on_its_bytes_without_a_signup(
    client: TestClient[Any, Any],
) -> None:
    status, answer = await patch(client, "teaser", {"exclusive": True})
    assert status == 200 and answer["facts"]["guest"] == "members"
    # bytes 403, the watch page leads to the signup, the locked tile's poster shows
    assert await statuses(client, "teaser") == [403, 403, 303, 200]
    member = sign(SECRET, "guest-1")
    assert await statuses(client, "teaser", **{COOKIE: member}) == [200, 200, 200, 200]
    forged = member[:-1] + ("0" if member[-1] != "0" else "1")
    assert await statuses(client, "teaser", **{COOKIE: forged}) == [403, 403, 303, 200]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "send a JSON object"),
        (b"[1]", "send a JSON object"),
        (b"x" * 5000, "at most 4096 bytes"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"publish_at": "tomorrow"}, "publish_at: an RFC 3339 time"),
        ({"title": "x" * 500}, "at most 120 characters"),
    ],
)
async def test_bad_facts_are_a_400_with_a_short_reason_and_one_line(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, body: object, reason: str
) -> None:
    with caplog.at_level(logging.INFO, logger="edged.web.assets"):
        status, answer = await patch(client, "teaser", body)
    assert status == 400 and reason in answer["error"], answer
    assert "/" not in answer["error"]
    assert len([r for r in caplog.records if r.name == "edged.web.assets"]) == 1
    assert (await listed(client, "teaser"))["guest"] == "show"  # nothing changed


async def test_facts_need_the_token_and_a_clip_on_the_box(client: TestClient[Any, Any]) -> None:
    async with client.patch("/api/v1/assets/teaser", data=b"{}") as response:
        assert response.status == 401
    async with client.patch("/api/v1/assets/nothere", data=b"{}", headers=AUTH) as response:
        assert response.status == 404


def sample(client: TestClient[Any, Any], name: str, labels: dict[str, str]) -> float | None:
    return client.app[METRICS].registry.get_sample_value(name, labels)


async def report(client: TestClient[Any, Any], body: object, phone: str = "") -> int:
    headers = {"X-Forwarded-For": phone} if phone else {}
    data = json.dumps(body).encode()
    async with client.post(WATCH_BEACON, data=data, headers=headers) as response:
        return response.status


def token(client: TestClient[Any, Any], clip: str) -> str:
    """A view token as the watch page of `clip` carries it."""
    return client.app[WATCH_GUARD].issue(clip)


async def page_token(client: TestClient[Any, Any], clip: str, phone: str = "") -> str:
    """The view token of one load of the watch page of `clip`."""
    headers = {"X-Forwarded-For": phone} if phone else {}
    async with client.get(f"/watch/{clip}", headers=headers) as response:
        assert response.status == 200
        found = re.search(r" data-v=([0-9a-f.]+)>", await response.text())
    assert found is not None
    return found.group(1)


def view(clip: str, kind: str, seconds: float = 0, view_id: str = "") -> object:
    return {"id": view_id, "clip": clip, "report": kind, "seconds": seconds}


async def test_watch_reports_count_views_and_retention_and_a_failing_clip_sinks(
    client: TestClient[Any, Any],
) -> None:
    first, second = await page_token(client, "teaser"), await page_token(client, "teaser")
    for kind, seconds in [("start", 0), ("first-frame", 0), ("watched", 3), ("watched", 10)]:
        assert await report(client, view("teaser", kind, seconds, first), "10.0.0.2") == 204
    for kind, played in [("start", 0.0), ("unmute", 0.0), ("end", 4.5)]:
        assert await report(client, view("teaser", kind, played, second), "10.0.0.3") == 204
    for phone in ("10.0.0.2", "10.0.0.3"):  # two views
        assert await report(client, view("other", "start", 0, token(client, "other")), phone) == 204
    clip = "edged_clip_views_total"
    assert sample(client, clip, {"clip": "teaser"}) == 2
    assert sample(client, "edged_clip_retained_10s_total", {"clip": "teaser"}) == 1
    assert sample(client, "edged_clip_reports_total", {"report": "watched-3s"}) == 1
    assert sample(client, "edged_clip_reports_total", {"report": "unmute"}) == 1
    assert sample(client, "edged_clip_watched_seconds_count", {}) == 1
    async with client.get("/api/v1/clips/stats", headers=AUTH) as response:
        stats = await response.json()
    rows = {row["clip"]: row for row in stats["clips"]}
    assert rows["teaser"] == {
        "clip": "teaser",
        "views": 2,
        "retained_10s": 1,
        "retention_10s": 0.5,
        "flagged": False,
    }
    assert rows["other"]["flagged"] is True  # 0 of 2 under the floor of 0.5: sinks
    async with client.get("/") as response:
        landing = await response.text()
    assert 0 < landing.index('"/watch/teaser"') < landing.index('"/watch/other"')  # sunk, not gone
    assert (stats["min_retention_10s"], stats["min_views"]) == (0.5, 2)
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 403)):
        async with client.get("/api/v1/clips/stats", headers=headers) as response:
            assert response.status == status  # the crew's figures


async def test_a_report_for_a_clip_not_on_the_box_makes_no_label(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="edged.web.telemetry"):
        assert await report(client, view("x" * 200, "start", 0, token(client, "teaser"))) == 204
        assert await report(client, view("teaser", "watched", 11, token(client, "teaser"))) == 400
        assert await report(client, {"id": "nothex!", "clip": "teaser", "report": "start"}) == 400
    # one line per refused report; one not counted is not logged at INFO (review 16b, 9)
    assert len([r for r in caplog.records if r.name == "edged.web.telemetry"]) == 2
    text = client.app[METRICS].exposition().decode()
    assert "x" * 200 not in text
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) is None


async def answer(client: TestClient[Any, Any], body: object) -> tuple[int, bytes]:
    async with client.post(WATCH_BEACON, data=json.dumps(body).encode()) as response:
        return response.status, await response.read()


async def test_a_staged_clips_reports_are_answered_as_an_unknown_clips(
    client: TestClient[Any, Any],
) -> None:
    """Review of #16, finding 5: 404 for a clip not on the box and 204 for a staged one told
    anyone on the LAN the name of a staged release. Both now get 204, and neither counts."""
    await patch(client, "teaser", {"publish_at": format_time(time.time() + 3600)})
    staged = await answer(client, view("teaser", "start", 0, token(client, "teaser")))
    unknown = await answer(client, view("nothere", "start", 0, token(client, "nothere")))
    assert staged == unknown == (204, b"")
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) is None
    assert sample(client, "edged_clip_reports_total", {"report": "start"}) == 0  # pre-set


def post_reports(port: int, body: object, times: int) -> list[int]:
    """POST the same report `times` over one connection (blocking: run it in a thread, so the
    loop only answers); the statuses."""
    data = json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    try:
        for _ in range(times):
            connection.request("POST", WATCH_BEACON, body=data)
            with connection.getresponse() as response:
                response.read()
                statuses.append(response.status)
    finally:
        connection.close()
    return statuses


async def test_the_same_report_of_a_view_counts_once(client: TestClient[Any, Any]) -> None:
    """Review of #16, finding 5: 500 identical POSTs made a clip sink (each one counted)."""
    port = client.server.port
    assert port is not None
    body = view("teaser", "start", 0, token(client, "teaser"))
    statuses = await asyncio.to_thread(post_reports, port, body, 500)
    assert statuses[:REPORT_BURST] == [204] * REPORT_BURST and set(statuses) == {204, 429}
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) == 1
    assert sample(client, "edged_clip_reports_total", {"report": "start"}) == 1


async def test_reports_with_ids_the_box_did_not_issue_count_nothing(
    client: TestClient[Any, Any],
) -> None:
    """Review 16b, finding 1: the view id was the client's choice; a fresh one per POST made 30
    views in a burst, and a clip sank. Now only the box's view tokens count."""
    made_up = [f"{n:016x}.{n:x}.{'0' * 32}" for n in range(REPORT_BURST - 2)]
    statuses = [await report(client, view("teaser", "start", 0, v)) for v in made_up]
    assert statuses == [204] * len(made_up)
    other_clips = token(client, "other")  # a real token, for another clip
    assert await report(client, view("teaser", "start", 0, other_clips)) == 204
    assert await report(client, view("teaser", "start", 0, "0123456789abcdef")) == 400
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) is None


async def test_page_loads_from_one_client_count_one_view(client: TestClient[Any, Any]) -> None:
    """Review 16b, finding 1: page loads from one address, each with its own token, count one
    view (and one retained view); from one IPv6 /64 too (each load from another address)."""
    loads = REPORT_BURST // 2  # two reports a load: all within the client's burst
    for phone in ("10.0.0.2", "2001:db8::1"):
        for n in range(loads):
            address = phone if "." in phone else f"2001:db8::{n + 1:x}"  # SLAAC: any in the /64
            page = await page_token(client, "teaser", address)
            assert await report(client, view("teaser", "start", 0, page), address) == 204
            assert await report(client, view("teaser", "watched", 10, page), address) == 204
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) == 2
    assert sample(client, "edged_clip_retained_10s_total", {"clip": "teaser"}) == 2


async def test_an_address_sending_too_many_reports_gets_429(client: TestClient[Any, Any]) -> None:
    tokens = [token(client, "teaser") for _ in range(REPORT_BURST + 1)]
    statuses = [await report(client, view("teaser", "start", 0, v)) for v in tokens]
    assert statuses == [204] * REPORT_BURST + [429]
    status, body = await answer(client, view("teaser", "start", 0, token(client, "teaser")))
    assert status == 429 and b"too many reports" in body and b"/" not in body
    assert sample(client, "edged_clip_views_total", {"clip": "teaser"}) == 1  # one client


async def test_behind_a_trusted_proxy_each_phone_has_its_own_report_limit(
    tmp_path: Path, store: AssetStore
) -> None:
    """As /join's limit (finding 8): from [guest] trusted_proxies, the client is
    X-Forwarded-For's; from anyone else the header is the client's own word, not trusted."""
    guest = GuestConfig(trusted_proxies=("127.0.0.1",))
    app = create_app(web_context(tmp_path, clips=store, guest=guest))
    async with TestClient(TestServer(app, host="127.0.0.1")) as proxied:

        async def from_phone(phone: str) -> int:
            return await report(
                proxied, view("teaser", "start", 0, token(proxied, "teaser")), phone
            )

        first = [await from_phone("10.0.0.2") for _ in range(REPORT_BURST + 1)]
        assert first == [204] * REPORT_BURST + [429]
        assert await from_phone("10.0.0.3") == 204  # the next phone behind it
        assert await from_phone("2001:db8::1") == 204
        assert await from_phone("2001:db8::2") == 204  # the same /64: the same bucket
        for n in range(3, REPORT_BURST + 1):
            await from_phone(f"2001:db8::{n:x}")
        assert await from_phone("2001:db8::ffff") == 429
    direct_app = create_app(web_context(tmp_path, clips=store))
    async with TestClient(TestServer(direct_app, host="127.0.0.1")) as direct:
        for _ in range(REPORT_BURST):
            assert await report(direct, view("teaser", "start", 0, token(direct, "teaser"))) == 204
        later = view("teaser", "start", 0, token(direct, "teaser"))
        assert await report(direct, later, "10.0.0.9") == 429  # a phone's header: no new bucket


async def test_the_watch_page_loads_its_reports_after_its_first_frame_from_the_box(
    client: TestClient[Any, Any],
) -> None:
    async with client.get("/watch/teaser") as response:
        page = await response.read()
    # Not a tag (even a deferred one delays the first frame): added by the page at its first frame.
    assert b"<script defer" not in page and len(page) < 3072
    assert re.search(rb"<script>[^<]*'/static/watch\.js'[^<]*</script>", page)
    async with client.get(WATCH_SCRIPT) as response:
        assert response.status == 200
        assert response.content_type == "text/javascript"
        assert "max-age" in response.headers["Cache-Control"]
        script, tag = await response.text(), response.headers["ETag"]
    assert "/api/v1/player/watch" in script and "http" not in script  # nothing leaves the box
    async with client.get(WATCH_SCRIPT, headers={"If-None-Match": tag}) as response:
        assert response.status == 304


async def test_a_clip_title_is_plain_text_wherever_shown(client: TestClient[Any, Any]) -> None:
    title, description = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    status, answer = await patch(client, "teaser", {"title": title, "description": description})
    assert status == 200 and answer["facts"]["title"] == title  # JSON: the text as given
    for path in ("/", "/watch/teaser"):
        async with client.get(path) as response:
            page = await response.text()
        assert title not in page and description not in page, path
    async with client.get("/") as response:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in await response.text()


async def cache_headers(
    client: TestClient[Any, Any], name: str, **cookies: str
) -> set[tuple[str, str]]:
    """The (Cache-Control, Vary) of the clip's bytes (whole, a range, HEAD) and its poster."""
    found = set()
    for method, path, headers in [
        ("GET", f"/assets/{name}", {}),
        ("GET", f"/assets/{name}", {"Range": "bytes=0-99"}),
        ("HEAD", f"/assets/{name}", {}),
        ("GET", f"/posters/{name}.jpg", {}),
    ]:
        async with client.request(method, path, headers=headers, cookies=cookies) as response:
            assert response.status in (200, 206), (path, response.status)
            found.add((response.headers["Cache-Control"], response.headers.get("Vary", "")))
    return found


async def test_only_a_plain_clip_may_be_kept_by_shared_caches(
    tmp_path: Path, store: AssetStore, client: TestClient[Any, Any]
) -> None:
    """Review of #16, finding 4: an exclusive clip's bytes were `public, max-age=300` with no
    Vary: a proxy in front of public_url handed a member's copy to guests for 5 minutes, and a
    browser kept a clip past its unpublish_at. Pinned (bytes from RAM) and unpinned alike."""
    clip = await asyncio.to_thread(make_clip, tmp_path / "pinned.mp4", seconds=1.0)
    await asyncio.to_thread(store.add, clip, "pinned", pin=True, origin="t")
    assert store.hot("pinned") is not None
    member = {COOKIE: sign(SECRET, "guest-1")}
    window = {"unpublish_at": format_time(time.time() + 3600)}
    for name in ("teaser", "pinned"):
        assert await cache_headers(client, name) == {("public, max-age=300", "")}
    for name in ("other", "pinned"):
        assert (await patch(client, name, window))[0] == 200
        assert await cache_headers(client, name) == {("private, no-cache", "")}
    for name in ("teaser", "pinned"):
        assert (await patch(client, name, {"exclusive": True}))[0] == 200
        assert await cache_headers(client, name, **member) == {("private, no-cache", "Cookie")}
