"""Clip facts and what a guest may see of a clip, as plain decisions. No I/O; time is passed in.

The facts of a clip (title, description, exclusive, its release window) come from the manifest
entry and from `PATCH /api/v1/assets/<name>`; `guest_view` is the one answer the asset route,
the watch page and the landing page give a guest; `order_clips` sinks the clips that fail to
hold their viewers (the landing page's order, never a deletion).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

View = Literal["show", "hidden", "members"]
SHOW: View = "show"
HIDDEN: View = "hidden"  # outside its window: 404 to guests, absent from the page
MEMBERS: View = "members"  # exclusive, the guest has not signed up: 403 on its bytes

TITLE_MAX = 120
DESCRIPTION_MAX = 1000
FIELDS = ("title", "description", "exclusive", "publish_at", "unpublish_at")


@dataclass(frozen=True)
class ClipFacts:
    """What a clip is to guests. Plain text: escape it wherever it is shown."""

    title: str
    description: str = ""
    exclusive: bool = False
    publish_at: float | None = None  # epoch seconds; None = published from the start
    unpublish_at: float | None = None  # epoch seconds; None = never withdrawn
    # Held back from guests whatever the window says: its facts could not be trusted (the
    # manifest and the crew disagree, or its manifest entry was rejected). Fails closed.
    withheld: bool = False


def title_from_name(name: str) -> str:
    """The title a clip has until one is given: its file name without the extension, with
    '_' and '-' as spaces ("summer_teaser-2.mp4" -> "summer teaser 2")."""
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    return " ".join(stem.replace("_", " ").replace("-", " ").split()) or name


@functools.lru_cache(maxsize=1024)
def default_facts(name: str) -> ClipFacts:
    """A clip nobody described: titled after its file, not exclusive, always published
    (remembered: a crowd asks for the same clips, and the facts are frozen)."""
    return ClipFacts(title=title_from_name(name))


def guest_view(facts: ClipFacts, now: float, signed_up: bool) -> View:
    """ "hidden" when withheld, before `publish_at` and from `unpublish_at` on; "members" for an
    exclusive clip and a guest who has not signed up; otherwise "show"."""
    if facts.withheld:
        return HIDDEN
    if facts.publish_at is not None and now < facts.publish_at:
        return HIDDEN
    if facts.unpublish_at is not None and now >= facts.unpublish_at:
        return HIDDEN
    if facts.exclusive and not signed_up:
        return MEMBERS
    return SHOW


# -- reading the fields (manifest entry, PATCH body) --------------------------------------------


def parse_time(value: object) -> float | None:
    """An RFC 3339 time with its offset ("2026-12-01T18:00:00Z") as epoch seconds; None for
    null; ValueError otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40 or "T" not in value.upper():
        raise ValueError("an RFC 3339 time such as 2026-12-01T18:00:00Z, or null")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("an RFC 3339 time such as 2026-12-01T18:00:00Z, or null") from None
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time with its offset (Z or +01:00)")
    return moment.timestamp()


def format_time(moment: float | None) -> str | None:
    """Epoch seconds as RFC 3339 in UTC (what the API shows); None stays None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=UTC).isoformat().replace("+00:00", "Z")


def _text(value: object, key: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    if len(value) > limit or any(ord(c) < 0x20 and c not in "\n\t" for c in value):
        raise ValueError(f"{key} must be at most {limit} characters, no control characters")
    return value


def apply_fields(facts: ClipFacts, fields: Mapping[str, object]) -> ClipFacts:
    """`facts` with the given fields changed (unknown keys refused); ValueError with a short
    reason naming the field. A null title returns to the name's."""
    unknown = sorted(key for key in fields if key not in FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0][:40]!r}: use {', '.join(FIELDS)}")
    changes: dict[str, object] = {}
    for key, value in fields.items():
        if key in ("publish_at", "unpublish_at"):
            try:
                changes[key] = parse_time(value)
            except ValueError as error:
                raise ValueError(f"{key}: {error}") from None
        elif key == "exclusive":
            if not isinstance(value, bool):
                raise ValueError("exclusive must be true or false")
            changes[key] = value
        elif key == "title" and value is None:
            changes[key] = ""  # filled from the name by the caller (with_title)
        else:
            changes[key] = _text(value, key, TITLE_MAX if key == "title" else DESCRIPTION_MAX)
    result = replace(facts, **changes)  # type: ignore[arg-type]
    if (
        result.publish_at is not None
        and result.unpublish_at is not None
        and result.unpublish_at <= result.publish_at
    ):
        raise ValueError("unpublish_at must be after publish_at")
    return result


def facts_from_fields(name: str, fields: Mapping[str, object]) -> ClipFacts:
    """The facts of clip `name` from the fields given (the others at their defaults)."""
    facts = apply_fields(default_facts(name), fields)
    return facts if facts.title.strip() else replace(facts, title=title_from_name(name))


# -- sinking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipCounts:
    """A clip's watch-page reports since the daemon started."""

    views: int = 0
    retained_10s: int = 0


def retention_share(counts: ClipCounts) -> float | None:
    """The share of views that played 10 s; None before the first view."""
    if counts.views <= 0:
        return None
    return min(counts.retained_10s / counts.views, 1.0)


def failing(counts: ClipCounts, min_retention_10s: float, min_views: int) -> bool:
    """A clip with at least `min_views` views whose 10-second retention is under the floor
    (a floor of 0 sinks nothing)."""
    share = retention_share(counts)
    return (
        share is not None
        and counts.views >= min_views
        and math.isfinite(share)
        and share < min_retention_10s
    )


def order_clips(
    names: Sequence[str],
    counts: Mapping[str, ClipCounts],
    min_retention_10s: float,
    min_views: int,
) -> list[str]:
    """`names` in their order, the failing clips moved to the bottom (in their order too)."""
    sunk = [
        name
        for name in names
        if failing(counts.get(name, ClipCounts()), min_retention_10s, min_views)
    ]
    sunk_set = set(sunk)
    return [name for name in names if name not in sunk_set] + sunk


def facts_document(facts: ClipFacts, now: float) -> dict[str, object]:
    """The facts as the crew's API shows them: times in RFC 3339 (UTC), whether they are
    withheld (the log says why), and what a guest who has not signed up gets now (`guest`:
    show, hidden, members)."""
    return {
        "title": facts.title,
        "description": facts.description,
        "exclusive": facts.exclusive,
        "publish_at": format_time(facts.publish_at),
        "unpublish_at": format_time(facts.unpublish_at),
        "withheld": facts.withheld,
        "guest": guest_view(facts, now, signed_up=False),
    }
