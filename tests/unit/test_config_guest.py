"""The [guest] section: the event page, the guests' link, campaigns, check-in, telemetry."""

from __future__ import annotations

import tomllib

import pytest

from edged import config
from edged.config import CampaignConfig, Config, ConfigError

DOCUMENT = """
[guest]
title = "Summer Tour: Berlin"
accent = "#0a84ff"
public_url = "https://popup.example.com/"
wifi_ssid = "Popup Guest"
wifi_password = "dance all night"

[[guest.campaigns]]
name = "popup-1"
source = "poster"
campaign = "summer-tour"
promo = "SUMMER10"

[[guest.campaigns]]
name = "partner"
"""


def test_guest_section_and_campaigns_are_read() -> None:
    guest = config.from_mapping(tomllib.loads(DOCUMENT)).guest
    assert guest.title == "Summer Tour: Berlin" and guest.accent == "#0a84ff"
    assert guest.public_url == "https://popup.example.com/"
    assert (guest.wifi_ssid, guest.wifi_password) == ("Popup Guest", "dance all night")
    assert guest.campaigns == (
        CampaignConfig(name="popup-1", source="poster", campaign="summer-tour", promo="SUMMER10"),
        CampaignConfig(name="partner"),
    )


def test_the_defaults_change_nothing() -> None:
    guest = Config().guest
    assert guest.campaigns == () and not guest.captive_portal and guest.public_url == ""
    assert guest.min_retention_10s == 0.0  # no clip sinks unless asked


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"campaigns": [{"source": "poster"}]}, "no name"),
        ({"campaigns": [{"name": "a"}, {"name": "a"}]}, "taken"),
        ({"campaigns": [{"name": "a", "promo": "<b>"}]}, "promo"),
        ({"campaigns": "popup-1"}, "list of tables"),
        ({"accent": "red"}, "accent"),
        ({"public_url": "javascript:alert(1)"}, "public_url"),
        ({"title": "two\nlines"}, "title"),
        ({"min_retention_10s": 1.5}, "at most"),
        # review 16b, finding 7: shaped like addresses, dropped without a word before
        ({"trusted_proxies": [":"]}, r"trusted_proxies = ':': not an IP address"),
        ({"trusted_proxies": ["10.0.0.1", ":::::"]}, "not an IP address"),
        ({"trusted_proxies": ["10.0.0.0/8"]}, "trusted_proxies"),
    ],
)
def test_bad_guest_settings_are_refused_by_name(table: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config.from_mapping({"guest": table})


def test_trusted_proxies_take_ipv4_and_ipv6_addresses() -> None:
    proxies = ["10.0.0.1", "fd00::1", "::ffff:10.0.0.2"]
    assert config.from_mapping({"guest": {"trusted_proxies": proxies}}).guest.trusted_proxies == (
        tuple(proxies)
    )
