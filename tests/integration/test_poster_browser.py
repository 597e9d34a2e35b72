"""The poster's QR codes as a phone's camera reads them (#16 acceptance): Chromium at 390x844
takes a picture of /qr, Debian's zbarimg decodes it, and the decoded link opens the event page;
the Wi-Fi code decodes to the exact join string. The picture is the README's
(EDGED_SCREENSHOTS=docs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edged.web.guest_qr import wifi_join
from tests.integration.test_browser import picture, run_in_namespace
from tests.support import loopback_config

pytestmark = pytest.mark.integration

# Two lines on the printed poster, A4 and A5.
TITLE = "Summer Pop-up at the Harbour: Live Sets"
# Every character the join format escapes, in the name and the password.
SSID = 'Tent "A"; 2,4:GHz'
PASSWORD = "pa:ss;w,o\\rd"  # a test network's


@pytest.mark.timeout(150)
def test_the_posters_codes_decode_to_a_link_that_opens_and_to_the_wifi(tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        # Every address of the test's own network: the link must be the LAN's, not loopback.
        "http": {"host": "0.0.0.0"},  # inside the test's network namespace
        "mdns": {"enabled": False},
        "media": {"test_pattern": "off"},
        "guest": {
            "title": TITLE,
            "wifi_ssid": SSID,
            "wifi_password": PASSWORD,
            "campaigns": [{"name": "popup-1", "source": "poster", "campaign": "summer-tour"}],
        },
    }
    config.write_text(loopback_config("box", tables))
    shot = picture(tmp_path, "poster-page.png")
    outcome = run_in_namespace(
        sys.executable,
        "-m",
        "tests.browser.poster_in_chromium",
        str(config),
        str(tmp_path / "data"),
        f"--shot={shot}",
        "/qr",
        "/qr?campaign=popup-1",
        "/qr?paper=a5",
    )
    assert outcome["error"] == "", outcome
    posters = outcome["posters"]
    assert isinstance(posters, dict)
    plain, tagged = posters["/qr"], posters["/qr?campaign=popup-1"]
    assert plain["status"] == 200, outcome
    links = [code for code in plain["codes"] if code.startswith("http")]
    # The namespace has lo, 10.77.0.1 and 10.77.0.2 and no default route: the first veth.
    assert len(links) == 1 and links[0].startswith("http://10.77.0.1:"), outcome
    assert wifi_join(SSID, PASSWORD) in plain["codes"], outcome
    assert sorted(plain["codes"]) == sorted([links[0], wifi_join(SSID, PASSWORD)]), outcome
    assert plain["opened"][links[0]] == {"status": 200, "title": TITLE}, outcome
    campaign_links = [code for code in tagged["codes"] if code.startswith("http")]
    assert campaign_links == [
        f"{links[0]}?campaign=popup-1&utm_source=poster&utm_campaign=summer-tour"
    ], outcome
    assert tagged["opened"][campaign_links[0]]["status"] == 200, outcome
    # The event page counted each opening by its campaign: the tagged link once, the plain twice
    # (/qr and /qr?paper=a5).
    assert outcome["visits"] == {"none": 2.0, "popup-1": 1.0}, outcome
    # Printed, each poster is one page of its paper (A4 595x842 pt, A5 420x595 pt).
    assert plain["printed"] == {"pages": 1, "size": [595, 842]}, outcome
    assert posters["/qr?paper=a5"]["printed"] == {"pages": 1, "size": [420, 595]}, outcome
    assert shot.read_bytes().startswith(b"\x89PNG")
