"""What a clip's C2PA manifest says, as a pure function of the clip's facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CAPTURE_LABEL = "org.edged.capture"  # event, node, stream, device, start, end, sources
DIGITAL_CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
MEDIA_TYPE = "video/mp4"


@dataclass(frozen=True)
class ClipClaim:
    """The facts a clip's manifest asserts. `sources`: (segment file name, its sha256 hex) in the
    order cut; `start`, `end`: the capture times (UTC; a naive time is taken as UTC)."""

    event: str
    node: str
    stream: str
    device: str
    start: datetime
    end: datetime
    sources: Sequence[tuple[str, str]] = field(default_factory=tuple)
    vertical: bool = False
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple((name, sha) for name, sha in self.sources))


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC, a naive time taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def manifest_definition(claim: ClipClaim, version: str) -> dict[str, Any]:
    """The manifest definition c2pa's Builder takes: generator, ingredients, assertions."""
    agent = {"name": "edged", "version": version}
    actions: list[dict[str, Any]] = [
        {
            "action": "c2pa.created",
            "digitalSourceType": DIGITAL_CAPTURE,
            "softwareAgent": agent,
            "when": utc_text(claim.start),
            "parameters": {"description": f"captured by {claim.device} on {claim.node}"},
        }
    ]
    if claim.vertical:
        actions += [
            {
                "action": "c2pa.edited",
                "softwareAgent": agent,
                "parameters": {"description": "re-encoded as a vertical 9:16 variant"},
            },
            {"action": "c2pa.cropped", "softwareAgent": agent},
        ]
    return {
        "claim_generator_info": [agent],
        "title": claim.title or f"{claim.stream} {utc_text(claim.start)}",
        "format": MEDIA_TYPE,
        "ingredients": [
            {
                "title": name,
                "format": MEDIA_TYPE,
                "relationship": "componentOf",
                "instance_id": f"sha256:{sha256}",
            }
            for name, sha256 in claim.sources
        ],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {"label": CAPTURE_LABEL, "data": capture_assertion(claim)},
        ],
    }


def capture_assertion(claim: ClipClaim) -> dict[str, Any]:
    return {
        "event": claim.event,
        "node": claim.node,
        "stream": claim.stream,
        "device": claim.device,
        "start": utc_text(claim.start),
        "end": utc_text(claim.end),
        "sources": [{"name": name, "sha256": sha256} for name, sha256 in claim.sources],
    }


def claim_from_sidecar(sidecar: Mapping[str, Any]) -> ClipClaim:
    """The claim for a clip described by the clip jobs' sidecar facts: event, node, stream,
    device, start and end (RFC 3339), sources ({file, sha256}), variant, title."""
    return ClipClaim(
        event=str(sidecar.get("event", "")),
        node=str(sidecar.get("node", "")),
        stream=str(sidecar.get("stream", "")),
        device=str(sidecar.get("device") or "unknown"),
        start=datetime.fromisoformat(str(sidecar["start"])),
        end=datetime.fromisoformat(str(sidecar["end"])),
        sources=[
            (str(source.get("file", source.get("name", ""))), str(source["sha256"]))
            for source in sidecar.get("sources", [])
        ],
        vertical=sidecar.get("variant") == "vertical",
        title=str(sidecar.get("title") or ""),
    )
