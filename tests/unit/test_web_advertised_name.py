"""The landing page and /api/v1/status name the box as it answers on the LAN (#12 item 16)."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from edged.web.app import create_app
from edged.web.context import WebServices
from tests.web_context import web_context


def _context(tmp_path: Path, advertised_name: str = "", landing_url: str = "") -> WebServices:
    return web_context(
        tmp_path,
        node="twin",
        advertised_name=advertised_name,
        landing_url=landing_url,
    )


async def test_a_renamed_box_shows_and_reports_its_advertised_name(tmp_path: Path) -> None:
    context = _context(tmp_path, advertised_name="twin-2", landing_url="http://twin-2.local:8080/")
    async with TestClient(TestServer(create_app(context), host="127.0.0.1")) as client:
        page = await (await client.get("/")).text()
        assert "<small>twin-2</small>" in page  # small, under the event's title (#16)
        status = await (await client.get("/api/v1/status")).json()
        assert status["node"] == "twin"
        assert status["advertised_name"] == "twin-2"
        assert status["landing_url"] == "http://twin-2.local:8080/"
        qr = await (await client.get("/qr.svg")).text()
        assert "http://twin-2.local:8080/" in qr


async def test_without_mdns_the_node_name_and_no_advertised_name(tmp_path: Path) -> None:
    async with TestClient(TestServer(create_app(_context(tmp_path)), host="127.0.0.1")) as client:
        assert "<small>twin</small>" in await (await client.get("/")).text()
        status = await (await client.get("/api/v1/status")).json()
        assert status["advertised_name"] is None
        assert status["landing_url"] is None
