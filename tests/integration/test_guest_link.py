"""The daemon's guests' link (#16 part 1): the address it serves the LAN on, `[guest]
public_url` overriding it, the poster and the captive portal on a real daemon (loopback)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.conftest import StartDaemon

pytestmark = pytest.mark.integration


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_public_url_is_the_link_and_the_probes_lead_to_it(start_daemon: StartDaemon) -> None:
    public = "https://popup.example.com/"
    daemon = start_daemon(
        {
            "guest": {"public_url": public, "captive_portal": True, "title": "Summer <Tour>"},
            "mdns": {"enabled": False},
        }
    )
    _, _, body = get(daemon.url + "/api/v1/status")
    assert json.loads(body)["landing_url"] == public
    _, _, svg = get(daemon.url + "/qr.svg")
    assert public.encode() in svg
    status, _, poster = get(daemon.url + "/qr")
    assert status == 200
    assert b"<h1>Summer &lt;Tour&gt;</h1>" in poster and public.encode() in poster
    status, headers, _ = get(daemon.url + "/generate_204")
    assert (status, headers["Location"]) == (302, public)


def test_a_box_bound_to_loopback_hands_out_that_address(start_daemon: StartDaemon) -> None:
    """Bound to one address, that is the one phones reach; the probes 404 when not asked for."""
    daemon = start_daemon({"mdns": {"enabled": False}})
    _, _, body = get(daemon.url + "/api/v1/status")
    assert json.loads(body)["landing_url"] == f"http://127.0.0.1:{daemon.port}/"
    assert get(daemon.url + "/hotspot-detect.html")[0] == 404
