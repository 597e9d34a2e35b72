"""Campaigns: which configured pop-up or partner a guest's link names, and the link that names it.

A campaign reaches the metrics only by a configured name: whatever a link carries, the label is
one of `labels(campaigns)`, never free text from a URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

from edged.config import CampaignConfig

# The query parameter naming the campaign, beside the UTM tags (utm_source, utm_campaign).
PARAMETER = "campaign"
# The metrics label of a visit, signup or view no configured campaign tagged.
UNTAGGED = "none"
TAGS = (PARAMETER, "utm_source", "utm_campaign")


def find(name: str, campaigns: Iterable[CampaignConfig]) -> CampaignConfig | None:
    """The configured campaign called `name`, or None."""
    return next((campaign for campaign in campaigns if name and campaign.name == name), None)


def utm_campaign(campaign: CampaignConfig) -> str:
    """The campaign's utm_campaign: its own, else its name."""
    return campaign.campaign or campaign.name


def campaign_of(query: Mapping[str, str], campaigns: Iterable[CampaignConfig]) -> str:
    """The configured campaign a link's query names ("" = none): `campaign=NAME` when NAME is
    configured, else the one campaign whose UTM tags the query carries."""
    configured = tuple(campaigns)
    named = find(query.get(PARAMETER, ""), configured)
    if named is not None:
        return named.name
    source, tag = query.get("utm_source", ""), query.get("utm_campaign", "")
    if not tag:
        return ""
    matching = [c for c in configured if utm_campaign(c) == tag and c.source == source]
    return matching[0].name if len(matching) == 1 else ""


def label(name: str) -> str:
    """The metrics label of campaign `name` as `campaign_of` gave it."""
    return name or UNTAGGED


def report_label(name: str, campaigns: Iterable[CampaignConfig]) -> str:
    """The metrics label of the campaign a guest's page reports: its name when configured, else
    none (a report never makes a new label)."""
    campaign = find(name, campaigns)
    return campaign.name if campaign is not None else UNTAGGED


def labels(campaigns: Iterable[CampaignConfig]) -> list[str]:
    """Every label a campaign counter may carry: the untagged one, then each configured name."""
    return [UNTAGGED, *(campaign.name for campaign in campaigns if campaign.name != UNTAGGED)]


def tagged_link(url: str, campaign: CampaignConfig) -> str:
    """`url` with the campaign's tags: campaign=NAME, utm_source (if any), utm_campaign; tags
    already in `url` are replaced, its other parameters kept."""
    parts = urlsplit(url)
    tags = {PARAMETER: campaign.name}
    if campaign.source:
        tags["utm_source"] = campaign.source
    tags["utm_campaign"] = utm_campaign(campaign)
    kept = [item for item in parts.query.split("&") if item and item.split("=", 1)[0] not in TAGS]
    query = "&".join([*kept, urlencode(tags)])
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))
