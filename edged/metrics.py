"""The one metrics catalog of edged, on its own CollectorRegistry (never the global one).

Subsystems receive the `Metrics` object from the daemon and touch only their own group; the names,
types and labels follow DESIGN.md (prefix `edged_`, base units, counters end in `_total`).
"""

from __future__ import annotations

from pathlib import Path

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _disk_free(path: Path) -> float:
    try:
        return float(psutil.disk_usage(str(path)).free)
    except OSError:
        return float("nan")


class Metrics:
    """Every metric edged exports, grouped by the subsystem that feeds it."""

    def __init__(self, *, version: str, node: str, event: str, data_dir: Path) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

        self.build_info = Info(
            "edged_build", "Version of edged and the box it runs on.", registry=self.registry
        )
        self.set_identity(version=version, node=node, event=event)

        self.disk_free_bytes = Gauge(
            "edged_disk_free_bytes",
            "Free bytes on the file system of the data dir.",
            registry=self.registry,
        )
        self.disk_free_bytes.set_function(lambda: _disk_free(data_dir))

    def set_identity(self, *, version: str, node: str, event: str) -> None:
        """Set the labels of edged_build_info (an event id can change on reload)."""
        self.build_info.info({"version": version, "node": node, "event": event})

    def exposition(self) -> bytes:
        """The Prometheus text exposition of the whole registry."""
        return generate_latest(self.registry)
