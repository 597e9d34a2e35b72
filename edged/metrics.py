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
    Counter,
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


class DeviceMetrics:
    """edged_devices{kind} and edged_device_events_total{action}."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.devices = Gauge(
            "edged_devices", "Video devices present, by kind.", ["kind"], registry=registry
        )
        self.events = Counter(
            "edged_device_events",
            "Device hotplug events handled, by action (add, remove).",
            ["action"],
            registry=registry,
        )
        for action in ("add", "remove"):
            self.events.labels(action)


class UploadMetrics:
    """The uploader's metrics (DESIGN.md: edged_upload_*, edged_upstream_up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.bytes = Counter(
            "edged_upload_bytes",
            "Bytes acknowledged by the upstream (parts and whole objects).",
            registry=registry,
        )
        self.parts = Counter(
            "edged_upload_parts",
            "Parts sent upstream, by result (ok, error).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "error"):
            self.parts.labels(result)
        self.queue_files = Gauge(
            "edged_upload_queue_files", "Files waiting to be uploaded.", registry=registry
        )
        self.queue_bytes = Gauge(
            "edged_upload_queue_bytes", "Bytes waiting to be uploaded.", registry=registry
        )
        self.oldest_pending = Gauge(
            "edged_upload_oldest_pending_seconds",
            "Age of the oldest file waiting to be uploaded; 0 when none waits.",
            registry=registry,
        )
        self.last_success = Gauge(
            "edged_upload_last_success_timestamp_seconds",
            "Unix time of the last verified upload; 0 before the first.",
            registry=registry,
        )
        self.upstream_up = Gauge(
            "edged_upstream_up",
            "1 when the upstream answers and accepts the credentials, else 0.",
            registry=registry,
        )


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
        self.upload = UploadMetrics(self.registry)
        self.devices = DeviceMetrics(self.registry)

    def set_identity(self, *, version: str, node: str, event: str) -> None:
        """Set the labels of edged_build_info (an event id can change on reload)."""
        self.build_info.info({"version": version, "node": node, "event": event})

    def exposition(self) -> bytes:
        """The Prometheus text exposition of the whole registry."""
        return generate_latest(self.registry)
