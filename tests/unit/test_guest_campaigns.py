"""Campaigns: a link names a configured campaign or none, and the poster's link carries its tags."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from edged.config import CampaignConfig
from edged.guest.campaigns import (
    UNTAGGED,
    campaign_of,
    find,
    label,
    labels,
    report_label,
    tagged_link,
    utm_campaign,
)
from edged.metrics import Metrics

POPUP = CampaignConfig(name="popup-1", source="poster", campaign="summer-tour", promo="SUMMER10")
PARTNER = CampaignConfig(name="radio", source="fm", campaign="")
CAMPAIGNS = (POPUP, PARTNER)


def test_a_configured_name_is_the_campaign() -> None:
    assert campaign_of({"campaign": "popup-1"}, CAMPAIGNS) == "popup-1"
    assert campaign_of({"campaign": "radio", "utm_source": "other"}, CAMPAIGNS) == "radio"


def test_an_unknown_or_missing_name_is_none() -> None:
    assert campaign_of({}, CAMPAIGNS) == ""
    assert campaign_of({"campaign": "made-up"}, CAMPAIGNS) == ""
    assert campaign_of({"campaign": ""}, CAMPAIGNS) == ""
    assert campaign_of({"campaign": "popup-1"}, ()) == ""


def test_utm_tags_alone_name_the_campaign_that_carries_both() -> None:
    assert campaign_of({"utm_source": "poster", "utm_campaign": "summer-tour"}, CAMPAIGNS) == (
        "popup-1"
    )
    # utm_campaign defaults to the name.
    assert campaign_of({"utm_source": "fm", "utm_campaign": "radio"}, CAMPAIGNS) == "radio"
    assert campaign_of({"utm_source": "web", "utm_campaign": "summer-tour"}, CAMPAIGNS) == ""
    assert campaign_of({"utm_source": "poster"}, CAMPAIGNS) == ""


def test_tags_two_campaigns_share_name_neither() -> None:
    twin = CampaignConfig(name="popup-2", source="poster", campaign="summer-tour")
    query = {"utm_source": "poster", "utm_campaign": "summer-tour"}
    assert campaign_of(query, (POPUP, twin)) == ""


@given(st.dictionaries(st.sampled_from(["campaign", "utm_source", "utm_campaign", "x"]), st.text()))
def test_the_label_is_always_configured_or_untagged(query: dict[str, str]) -> None:
    assert label(campaign_of(query, CAMPAIGNS)) in labels(CAMPAIGNS)


def test_labels_and_lookup() -> None:
    assert labels(CAMPAIGNS) == [UNTAGGED, "popup-1", "radio"]
    assert label("") == UNTAGGED
    assert find("radio", CAMPAIGNS) is PARTNER
    assert find("", CAMPAIGNS) is None
    assert utm_campaign(PARTNER) == "radio"


def test_the_tagged_link_reads_back_as_its_campaign() -> None:
    link = tagged_link("http://192.168.1.20:8080/", POPUP)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "192.168.1.20:8080", "/")
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query == {"campaign": "popup-1", "utm_source": "poster", "utm_campaign": "summer-tour"}
    assert campaign_of(query, CAMPAIGNS) == "popup-1"


def test_the_tagged_link_keeps_other_parameters_and_replaces_old_tags() -> None:
    link = tagged_link("https://popup.example.com?lang=de&utm_source=old&campaign=x", PARTNER)
    assert link == (
        "https://popup.example.com/?lang=de&campaign=radio&utm_source=fm&utm_campaign=radio"
    )


def test_the_visit_counter_is_in_the_catalog(tmp_path: Path) -> None:
    metrics = Metrics(version="0", node="n", event="e", data_dir=tmp_path)
    metrics.guest.visits.labels("popup-1").inc()
    assert b'edged_guest_visits_total{campaign="popup-1"} 1.0' in metrics.exposition()


def test_a_reported_campaign_is_configured_or_none() -> None:
    assert report_label("popup-1", CAMPAIGNS) == "popup-1"
    assert report_label("", CAMPAIGNS) == UNTAGGED
    assert report_label("Popup-1", CAMPAIGNS) == UNTAGGED  # never a new label
    assert report_label("none", ()) == UNTAGGED


@given(st.text())
def test_a_reported_campaign_is_always_a_known_label(name: str) -> None:
    assert report_label(name, CAMPAIGNS) in labels(CAMPAIGNS)


def test_every_campaign_starts_at_zero_visits_and_views(tmp_path: Path) -> None:
    metrics = Metrics(version="0", node="n", event="e", data_dir=tmp_path)
    metrics.guest.campaigns(labels(CAMPAIGNS))
    text = metrics.exposition()
    for name in labels(CAMPAIGNS):
        assert f'edged_guest_visits_total{{campaign="{name}"}} 0.0'.encode() in text
        assert f'edged_guest_clip_views_total{{campaign="{name}"}} 0.0'.encode() in text
