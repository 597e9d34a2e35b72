"""The guests' link, the poster page, campaigns' links and visits, the captive-portal answers
(#16 part 1), against a real aiohttp server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edged.config import CampaignConfig, GuestConfig
from edged.web.app import create_app
from edged.web.context import WebServices
from edged.web.event_page import count_visit
from edged.web.guest_qr import CAPTIVE_PROBES, poster_html, print_qr, wifi_join
from tests.web_context import web_context

POPUP = CampaignConfig(name="popup-1", source="poster", campaign="summer-tour", promo="SUMMER10")
LANDING = "http://192.168.1.20:8080/"


def context(tmp_path: Path, guest: GuestConfig | None = None) -> WebServices:
    services = web_context(
        tmp_path, node="box", event="gala", landing_url=LANDING, guest=guest or GuestConfig()
    )
    services.identity.typed_url = "http://box.local:8080/"
    return services


def client(services: WebServices, app: web.Application | None = None) -> TestClient:
    return TestClient(TestServer(app or create_app(services), host="127.0.0.1"))


def test_the_wifi_join_code_escapes_what_the_format_reserves() -> None:
    assert wifi_join("Venue", "s3cret") == "WIFI:T:WPA;S:Venue;P:s3cret;;"
    assert wifi_join('a;b,c:d"e\\f', "p;w") == 'WIFI:T:WPA;S:a\\;b\\,c\\:d\\"e\\\\f;P:p\\;w;;'
    assert wifi_join("Open Venue", "") == "WIFI:T:nopass;S:Open Venue;;"


def test_the_poster_escapes_everything_it_shows() -> None:
    guest = GuestConfig(wifi_ssid="<b>net</b>", wifi_password='"><script>x</script>')  # noqa: S106
    html = poster_html(
        title="<script>alert(1)</script>", link=LANDING + "?a=<x>", typed="", guest=guest
    )
    assert "<script>" not in html and "<b>net" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;net&lt;/b&gt;" in html


async def test_the_poster_shows_the_title_the_qr_the_addresses(tmp_path: Path) -> None:
    async with client(context(tmp_path, GuestConfig(title="Summer Tour"))) as http:
        response = await http.get("/qr")
        assert response.status == 200
        page = await response.text()
    assert "<h1>Summer Tour</h1>" in page
    assert page.count("<svg") == 1  # no Wi-Fi configured: the guests' link alone
    assert f"<p class=link>{LANDING}</p>" in page
    assert "http://box.local:8080/" in page
    assert "@page{size:A4 portrait" in page
    assert "http://" not in page.replace(LANDING, "").replace("http://box.local:8080/", "").replace(
        "http://www.w3.org/2000/svg", ""
    )  # nothing the page would fetch from elsewhere
    assert len(page.encode()) < 30_000


async def test_the_poster_is_titled_by_the_event_and_has_an_a5_form(tmp_path: Path) -> None:
    async with client(context(tmp_path)) as http:
        page = await (await http.get("/qr?paper=a5")).text()
        bad = await http.get("/qr?paper=letter")
        assert bad.status == 400
        assert "a4 or a5" in await bad.text()
    assert "<h1>gala</h1>" in page and "@page{size:A5 portrait" in page


async def test_the_wifi_join_code_is_on_the_poster_when_configured(tmp_path: Path) -> None:
    guest = GuestConfig(wifi_ssid="Venue", wifi_password="s3cret")  # noqa: S106
    async with client(context(tmp_path, guest)) as http:
        page = await (await http.get("/qr")).text()
    assert page.count("<svg") == 2
    assert "Network: <b>Venue</b><br>Password: <b>s3cret</b>" in page


async def test_a_campaign_tags_the_link_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    tagged = LANDING + "?campaign=popup-1&amp;utm_source=poster&amp;utm_campaign=summer-tour"
    async with client(context(tmp_path, GuestConfig(campaigns=(POPUP,)))) as http:
        page = await (await http.get("/qr?campaign=popup-1")).text()
        assert f"<p class=link>{tagged}</p>" in page
        svg = await (await http.get("/qr.svg", params={"campaign": "popup-1"})).text()
        assert tagged in svg
        for path in ("/qr?campaign=nope", "/qr.svg?campaign=nope"):
            refused = await http.get(path)
            assert refused.status == 404, path
            assert (await refused.text()).startswith("unknown campaign"), path
        plain = await (await http.get("/qr.svg")).text()
        assert LANDING in plain and "utm_" not in plain


async def test_visits_are_counted_per_configured_campaign_only(tmp_path: Path) -> None:
    services = context(tmp_path, GuestConfig(campaigns=(POPUP,)))
    app = create_app(services)

    async def visited(request: web.Request) -> web.Response:
        return web.Response(text=count_visit(request))

    app.router.add_get("/visited", visited)
    async with client(services, app) as http:
        metrics = await (await http.get("/metrics")).text()
        assert 'edged_guest_visits_total{campaign="popup-1"} 0.0' in metrics
        assert 'edged_guest_visits_total{campaign="none"} 0.0' in metrics
        queries = ["campaign=popup-1", "utm_source=poster&utm_campaign=summer-tour", "", "x=1"]
        names = [await (await http.get(f"/visited?{query}")).text() for query in queries]
        assert names == ["popup-1", "popup-1", "", ""]
        assert await (await http.get("/visited?campaign=free-text")).text() == ""
        metrics = await (await http.get("/metrics")).text()
    assert 'edged_guest_visits_total{campaign="popup-1"} 2.0' in metrics
    assert 'edged_guest_visits_total{campaign="none"} 3.0' in metrics
    assert "free-text" not in metrics


async def test_captive_portal_probes_404_unless_asked(tmp_path: Path) -> None:
    async with client(context(tmp_path)) as http:
        for path in CAPTIVE_PROBES:
            assert (await http.get(path, allow_redirects=False)).status == 404, path


async def test_captive_portal_probes_lead_to_the_event_page(tmp_path: Path) -> None:
    async with client(context(tmp_path, GuestConfig(captive_portal=True))) as http:
        for path in CAPTIVE_PROBES:
            response = await http.get(path, allow_redirects=False)
            assert response.status == 302, path
            assert response.headers["Location"] == LANDING, path


def test_the_terminal_shows_the_link_and_the_typed_form(capsys: pytest.CaptureFixture[str]) -> None:
    print_qr(LANDING, "http://box.local:8080/")
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"Scan to watch: {LANDING}  (or type http://box.local:8080/)"
    print_qr(LANDING)
    assert capsys.readouterr().out.splitlines()[0] == f"Scan to watch: {LANDING}"
