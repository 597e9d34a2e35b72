"""The clip manifest as plain decisions: parsing, the plan against the cache cap, per-entry
retry and the one summary line of a pass. No I/O; time is passed in (`now`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edged.cache.ranges import valid_name
from edged.errors import EdgedError
from edged.guest.clips import FIELDS as FACT_FIELDS
from edged.guest.clips import facts_from_fields

RETRY_FIRST_SECONDS = 300.0  # a failed entry waits this long before it is tried again ...
RETRY_MAX_SECONDS = 3600.0  # ... doubling up to this
NAMES_SHOWN = 3  # names of one kind in the summary line before "and N more"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# The kinds of reasons an entry is not on the box, as the summary line and the status name them.
NOT_IN_BUCKET = "not in the bucket"
CHECKSUM = "checksum differs"
NOT_VIDEO = "not a playable video"
TOO_LARGE = "larger than [cache] max_bytes"
NO_ROOM = "no room under [cache] max_bytes"
UPSTREAM = "upstream error"


class ManifestError(EdgedError, ValueError):
    """The manifest object is not the JSON edged expects."""


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    key: str
    pin: bool
    sha256: str
    size: int | None = None  # bytes upstream, when the manifest says (saves a HEAD)
    # The clip's facts as the entry gives them (title, description, exclusive, publish_at,
    # unpublish_at; edged.guest.clips), checked; as (field, value) pairs in the entry's order.
    facts: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Rejected:
    """An entry skipped for what it says; the others replicate. `name` is the clip's when
    the entry named one (its facts then stay as they were, edged.cache.facts); else ""."""

    index: int
    reason: str
    name: str = ""


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]
    rejected: tuple[Rejected, ...] = ()

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]


def parse_manifest(data: bytes, assets_prefix: str) -> Manifest:
    """`{"assets": [{"name": ..., "key": ..., "pin": true, "sha256": ..., "size": ...}, ...]}`
    (or the bare list; an entry may be just its name), in priority order. `key` defaults to
    `<assets prefix>/<name>`, `pin` to true. The optional facts (`title`, `description`,
    `exclusive`, `publish_at`, `unpublish_at` in RFC 3339) go to `facts`. A bad entry is
    rejected with its reason; only a document that is not a list of entries fails as a whole."""
    try:
        document = json.loads(data)
        entries = document["assets"] if isinstance(document, dict) else document
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestError(f"manifest is not a JSON list of assets: {error}") from error
    if not isinstance(entries, list):
        raise ManifestError("manifest is not a JSON list of assets")
    parsed: list[ManifestEntry] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for index, item in enumerate(entries):
        entry = _entry(item, assets_prefix)
        if isinstance(entry, tuple):
            rejected.append(Rejected(index, entry[1], entry[0]))
        elif entry.name in seen:
            rejected.append(Rejected(index, f"{entry.name} is listed twice; the first counts"))
        else:
            seen.add(entry.name)
            parsed.append(entry)
    return Manifest(tuple(parsed), tuple(rejected))


def _entry(item: object, assets_prefix: str) -> ManifestEntry | tuple[str, str]:
    """The entry, or (its name or "", why it is skipped)."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        return "", "not an object or a name"
    name = item.get("name")
    if not isinstance(name, str) or not valid_name(name):
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        return "", f"name {shown} is not an asset name (letters, digits, '.', '_', '-'; max 128)"
    reason = _refusal(item, name, assets_prefix)
    if reason:
        return name, f"{name}: {reason}"
    sha256 = item.get("sha256") or ""
    return ManifestEntry(
        name=name,
        key=item.get("key") or f"{assets_prefix.rstrip('/')}/{name}",
        pin=item.get("pin", True),
        sha256=sha256.lower(),
        size=item.get("size"),
        facts=tuple((field, item[field]) for field in FACT_FIELDS if field in item),
    )


def _refusal(item: dict[str, Any], name: str, assets_prefix: str) -> str:
    """Why the entry of clip `name` is skipped ("" when it is not)."""
    key = item.get("key") or f"{assets_prefix.rstrip('/')}/{name}"
    if not isinstance(key, str) or key.startswith("/"):
        return "key must be an object key"
    if not isinstance(item.get("pin", True), bool):
        return "pin must be true or false"
    sha256 = item.get("sha256") or ""
    if not isinstance(sha256, str) or (sha256 and not _SHA256.match(sha256.lower())):
        return "sha256 must be 64 hex digits"
    size = item.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        return "size must be a whole number of bytes"
    try:
        facts_from_fields(name, {field: item[field] for field in FACT_FIELDS if field in item})
    except ValueError as error:
        return str(error)
    return ""


# -- the plan against the cap ------------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """One manifest entry as the pass sees it."""

    entry: ManifestEntry
    held: int | None = None  # bytes of its up-to-date copy on the box; None when not here
    size: int | None = None  # bytes to fetch; None when it is not fetched this pass (waiting)


@dataclass(frozen=True)
class Plan:
    fetch: tuple[ManifestEntry, ...]
    cannot_fit: tuple[tuple[ManifestEntry, str, str], ...]  # (entry, kind, reason)


def plan_replication(wanted: Sequence[Wanted], fixed_bytes: int, max_bytes: int) -> Plan:
    """What to fetch, in priority order, so the manifest's clips fit `max_bytes` together with
    `fixed_bytes` (pinned clips the manifest does not list). A clip held stays and counts; a
    clip that does not fit in what higher-priority clips leave is not fetched, so nothing is
    downloaded only to be evicted (other unpinned clips are evicted before manifest clips)."""
    left = max_bytes - fixed_bytes
    fetch: list[ManifestEntry] = []
    cannot: list[tuple[ManifestEntry, str, str]] = []
    for item in wanted:
        if item.held is not None:
            left -= item.held
        elif item.size is None:
            continue
        elif item.size > max_bytes:
            reason = f"{item.size} bytes, [cache] max_bytes is {max_bytes}"
            cannot.append((item.entry, TOO_LARGE, reason))
        elif item.size > left:
            reason = f"{item.size} bytes, {max(left, 0)} of {max_bytes} left"
            cannot.append((item.entry, NO_ROOM, reason))
        else:
            fetch.append(item.entry)
            left -= item.size
    return Plan(tuple(fetch), tuple(cannot))


# -- per-entry retry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why an entry is not on the box, and when it is tried again."""

    kind: str
    reason: str
    attempts: int
    retry_at: float
    etag: str = ""  # the upstream object refused: the same object is never downloaded again


def failed(
    previous: Failure | None,
    now: float,
    kind: str,
    reason: str,
    etag: str = "",
    first: float = RETRY_FIRST_SECONDS,
    maximum: float = RETRY_MAX_SECONDS,
) -> Failure:
    """The entry failed at `now`: it waits `first` seconds, doubling per failure up to `maximum`."""
    attempts = (previous.attempts if previous is not None else 0) + 1
    wait = min(first * 2 ** (attempts - 1), maximum)
    return Failure(kind, reason, attempts, now + wait, etag or (previous.etag if previous else ""))


def due(failure: Failure | None, now: float) -> bool:
    """Whether an entry may be tried at `now`."""
    return failure is None or now >= failure.retry_at


# -- the summary line ----------------------------------------------------------------------------


@dataclass
class PassReport:
    """What one pass found; one line in the log, and the status."""

    held: int = 0
    fetched: list[str] = field(default_factory=list)
    problems: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # kind -> entries
    rejected: int = 0

    def problem(self, kind: str, index: int, name: str) -> None:
        """Entry `index` (its manifest position), `name`, is not on the box for `kind`."""
        self.problems.setdefault(kind, []).append((index, name))

    @property
    def trouble(self) -> str:
        """The clips not on the box and the entries skipped, by kind; empty when none. The
        same state gives the same text whatever order the pass met it in."""
        parts = [
            f"{len(entries)} {kind} ({_names([name for _, name in sorted(entries)])})"
            for kind, entries in sorted(self.problems.items())
        ]
        if self.rejected:
            parts.append(f"{self.rejected} entries skipped (invalid)")
        return ", ".join(parts)

    def line(self, manifest_key: str) -> str:
        text = f"manifest {manifest_key}: {self.held} clips here"
        if self.fetched:
            text += f", fetched {_names(self.fetched)}"
        if self.trouble:
            text += f"; not replicated: {self.trouble}"
        return text


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")
