"""The event page in process: a real clip cache (PyAV-made clips), the landing page, the guests'
tiles JSON and the event logo through the API, on a real aiohttp server and client."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edged.cache.store import AssetStore
from edged.config import GuestConfig
from edged.guest.page import PAGE_BUDGET
from edged.web.app import create_app
from edged.web.context import METRICS, WebServices
from edged.web.event_page import LOGO_API, TILES_PATH
from edged.web.live import player_html
from tests.clips import make_clip
from tests.unit.test_event_page import png
from tests.web_context import TOKEN, web_context

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    store = AssetStore(tmp_path / "data" / "cache", max_bytes=10**9)
    store.add(make_clip(tmp_path / "a.mp4", seconds=3), "summer_teaser.mp4", pin=True, origin="t")
    return store


def services(tmp_path: Path, store: AssetStore, **guest: Any) -> WebServices:
    context = web_context(tmp_path, clips=store, guest=GuestConfig(**guest))
    context.data_dir = tmp_path / "data"  # where the logo is kept
    return context


def serve(context: WebServices) -> TestClient[Any, Any]:
    return TestClient(TestServer(create_app(context), host="127.0.0.1"))


@pytest.fixture
async def client(tmp_path: Path, store: AssetStore) -> AsyncIterator[TestClient[Any, Any]]:
    context = await asyncio.to_thread(
        services, tmp_path, store, title="Summer <Tour>", accent="#00aa55"
    )
    async with serve(context) as test_client:
        yield test_client


async def test_the_landing_page_shows_the_event_and_its_clips(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    assert "<h1>Summer &lt;Tour&gt;</h1>" in page and "<small>box</small>" in page
    assert "--a:#00aa55" in page
    assert "<span class=n>summer teaser</span>" in page  # the title, not the file name
    assert "<em class=d>0:03</em>" in page  # the duration the cache knows
    assert 'href="/watch/summer_teaser.mp4"' in page
    assert len(page.encode()) <= PAGE_BUDGET


async def test_the_tiles_json_is_what_the_page_shows_and_nothing_about_anyone(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get(TILES_PATH)  # no token
    assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
    document = await response.json()
    assert document["title"] == "Summer <Tour>"
    (tile,) = document["tiles"]
    assert tile == {
        "kind": "clip",
        "name": "summer_teaser.mp4",
        "title": "summer teaser",
        "description": "",
        "href": "/watch/summer_teaser.mp4",
        "poster": "/posters/summer_teaser.mp4.jpg",
        "duration": "0:03",
        "locked": False,
    }
    page = await (await client.get("/")).text()
    assert f'data-v="{document["version"]}"' in page  # the page redraws only on a change


async def test_a_logo_is_uploaded_with_the_token_kept_0600_and_served_with_caching(
    tmp_path: Path, store: AssetStore, client: TestClient[Any, Any]
) -> None:
    logo = png(120, 40)
    assert (await client.put(LOGO_API, data=logo)).status == 401
    assert (await client.get("/guest/logo")).status == 404
    response = await client.put(LOGO_API, data=logo, headers=AUTH)
    assert response.status == 200, await response.text()
    url = (await response.json())["url"]
    stored = tmp_path / "data" / "guest" / "logo.png"
    assert stored.read_bytes() == logo and stat.S_IMODE(stored.stat().st_mode) == 0o600
    served = await client.get(url)
    assert served.status == 200 and await served.read() == logo
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Cache-Control"] == "public, max-age=86400"
    again = await client.get(url, headers={"If-None-Match": served.headers["ETag"]})
    assert again.status == 304
    assert f'<img src="{url}" alt="">' in await (await client.get("/")).text()
    # a restart reads it back
    context = await asyncio.to_thread(services, tmp_path, store)  # real metrics: not on the loop
    async with serve(context) as restarted:
        assert await (await restarted.get(url)).read() == logo
    assert (await client.delete(LOGO_API, headers=AUTH)).status == 200
    assert not stored.exists() and (await client.get(url)).status == 404
    assert (await client.delete(LOGO_API, headers=AUTH)).status == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', 415),
        (b"GIF89a", 415),
        (png(10, 10) + b"\x00" * 300_000, 413),
    ],
)
async def test_a_logo_that_is_not_a_png_or_jpeg_is_refused_with_a_reason(
    tmp_path: Path, client: TestClient[Any, Any], body: bytes, status: int
) -> None:
    response = await client.put(LOGO_API, data=body, headers=AUTH)
    assert response.status == status
    reason = (await response.json())["error"]
    assert str(tmp_path) not in reason and len(reason) < 100
    assert not (tmp_path / "data" / "guest").exists() or not any(
        (tmp_path / "data" / "guest").iterdir()
    )
    assert "/guest/logo" not in await (await client.get("/")).text()


async def test_a_clip_added_shows_in_the_next_tiles(
    tmp_path: Path, store: AssetStore, client: TestClient[Any, Any]
) -> None:
    clip = await asyncio.to_thread(make_clip, tmp_path / "b.mp4", seconds=2)
    before = (await (await client.get(TILES_PATH)).json())["version"]
    await asyncio.to_thread(store.add, clip, "encore.mp4", pin=False, origin="t")
    after = await (await client.get(TILES_PATH)).json()
    assert after["version"] != before
    assert [t["name"] for t in after["tiles"]] == ["summer_teaser.mp4", "encore.mp4"]


async def test_the_players_have_a_way_back_and_the_clips_title(
    client: TestClient[Any, Any],
) -> None:
    title = {"title": "<b>Opening</b> night"}
    response = await client.patch("/api/v1/assets/summer_teaser.mp4", json=title, headers=AUTH)
    assert response.status == 200, await response.text()
    page = await (await client.get("/watch/summer_teaser.mp4")).text()
    assert "<title>&lt;b&gt;Opening&lt;/b&gt; night</title>" in page
    assert '<a href=/ aria-label="All videos">' in page
    assert "<b id=t>&lt;b&gt;Opening&lt;/b&gt; night</b>" in page
    assert "<a id=n hidden>" in page  # the next clip, filled in after the first frame
    # the video element and its script come first; the bar after them
    assert page.index("<video") < page.index("<nav") and len(page.encode()) < 3072


def test_the_live_page_has_a_way_back_and_the_streams_name() -> None:
    page = player_html("cam<1>")
    assert '<a href=/ aria-label="All videos">&#8249;</a><b>cam&lt;1&gt;</b><i>LIVE</i>' in page
    assert page.index("<video") < page.index("<nav") and len(page.encode()) < 5120


async def test_each_view_of_the_page_is_counted_once_and_its_refreshes_never(
    client: TestClient[Any, Any],
) -> None:
    assert client.app is not None
    registry = client.app[METRICS].registry

    def visits() -> float:
        return registry.get_sample_value("edged_guest_visits_total", {"campaign": "none"}) or 0.0

    await (await client.get("/")).text()
    await (await client.get("/")).text()
    for _ in range(3):
        await (await client.get(TILES_PATH)).json()
    assert (await client.head("/")).status == 200
    assert visits() == 2
