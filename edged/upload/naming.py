"""The one owner of object naming: keys, the sidecar's event, the STS policy and the stale-upload
prefix all come from here, so an event change on reload moves them together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from edged.upload.policy import object_key


@dataclass(frozen=True)
class ObjectNaming:
    """`<prefix>/<event>/<node>/<stream>/<YYYY-MM-DD>/<file>` (DESIGN.md's upstream layout)."""

    prefix: str
    event: str
    node: str

    def key(self, stream: str, when: datetime, filename: str) -> str:
        return object_key(
            prefix=self.prefix,
            event=self.event,
            node=self.node,
            stream=stream,
            when=when,
            filename=filename,
        )

    def for_event(self, event: str) -> ObjectNaming:
        """The naming of another event (a segment keeps the event its sidecar names)."""
        return self if event == self.event or not event else replace(self, event=event)

    def event_prefix(self, event: str | None = None) -> str:
        """`<prefix>/<event>/`: what the box's STS credentials may write under."""
        parts = [self.prefix.strip("/"), self.event if event is None else event]
        return "/".join(part for part in parts if part) + "/"

    def node_prefix(self) -> str:
        """`<prefix>/<event>/<node>/`: this box's objects of the current event."""
        return f"{self.event_prefix()}{self.node}/"

    def event_of(self, key: str) -> str | None:
        """The event a key of this layout belongs to, or None for a key of another layout."""
        base = self.prefix.strip("/")
        rest = key.removeprefix(f"{base}/") if base else key
        if base and rest == key:
            return None
        event, _, tail = rest.partition("/")
        return event if event and tail.startswith(f"{self.node}/") else None

    def policy_prefixes(self, pending_keys: Iterable[str]) -> list[str]:
        """The current event's prefix and those of files still queued under an earlier event."""
        events = {self.event} | {e for key in pending_keys if (e := self.event_of(key))}
        return sorted(self.event_prefix(event) for event in events)
