"""The one metrics catalog of edged, on its own CollectorRegistry (never the global one).

Subsystems receive the `Metrics` object from the daemon and touch only their own group; the names,
types and labels follow DESIGN.md (prefix `edged_`, base units, counters end in `_total`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edged.clock import clock_synchronized
from edged.guest.clips import ClipCounts

CONTENT_TYPE = CONTENT_TYPE_LATEST


PI_THROTTLE_BITS = {
    "under_voltage": 0,
    "frequency_capped": 1,
    "throttled": 2,
    "soft_temperature_limit": 3,
}
PI_THROTTLED_FILE = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


class SystemCollector(Collector):
    """CPU, memory, network per interface and the Pi's throttling flags, read at scrape time."""

    def __init__(self, throttled_file: Path = PI_THROTTLED_FILE) -> None:
        self._throttled_file = throttled_file
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def collect(self) -> Iterator[Metric]:
        cpu = GaugeMetricFamily(
            "edged_cpu_usage_ratio", "Share of all CPU time used since the last scrape (0-1)."
        )
        cpu.add_metric([], psutil.cpu_percent(interval=None) / 100)
        yield cpu
        memory = psutil.virtual_memory()
        used = GaugeMetricFamily("edged_memory_used_bytes", "Memory in use (total - available).")
        used.add_metric([], float(memory.total - memory.available))
        yield used
        total = GaugeMetricFamily("edged_memory_total_bytes", "Memory of the box.")
        total.add_metric([], float(memory.total))
        yield total
        received = CounterMetricFamily(
            "edged_network_receive_bytes", "Bytes received, by interface.", labels=["interface"]
        )
        sent = CounterMetricFamily(
            "edged_network_transmit_bytes", "Bytes sent, by interface.", labels=["interface"]
        )
        for name, counters in sorted(psutil.net_io_counters(pernic=True).items()):
            if name == "lo":
                continue
            received.add_metric([name], float(counters.bytes_recv))
            sent.add_metric([name], float(counters.bytes_sent))
        yield received
        yield sent
        try:
            value = int(self._throttled_file.read_text().strip(), 16)
        except (OSError, ValueError):
            return  # not a Raspberry Pi
        flags = GaugeMetricFamily(
            "edged_pi_throttled",
            "Raspberry Pi firmware flags now set (1) or clear (0).",
            labels=["flag"],
        )
        for flag, bit in PI_THROTTLE_BITS.items():
            flags.add_metric([flag], float((value >> bit) & 1))
        yield flags


def _clock_synchronized() -> float:
    synced = clock_synchronized()
    return math.nan if synced is None else float(synced)


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


class StreamMetrics:
    """Per-stream frame accounting, encoder facts, thermal state, recording and spool."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "edged_stream_up", "1 while the stream runs, else 0.", ["stream"], registry=registry
        )
        self.captured = Counter(
            "edged_frames_captured", "Frames read from the source.", ["stream"], registry=registry
        )
        self.encoded = Counter(
            "edged_frames_encoded", "Frames encoded.", ["stream"], registry=registry
        )
        self.dropped = Counter(
            "edged_frames_dropped",
            "Frames lost, by stage: capture (gaps in the source), encode (queue full or "
            "thermal decimation), output (a slow consumer).",
            ["stream", "stage"],
            registry=registry,
        )
        self.encoded_bytes = Counter(
            "edged_encoded_bytes", "Bytes out of the encoder.", ["stream"], registry=registry
        )
        # DESIGN.md names this edged_stream_bitrate_bits_per_second, but Prometheus' base unit
        # is the byte and promtool's lint refuses "bits": bytes per second, times 8 for bits.
        self.bitrate = Gauge(
            "edged_stream_bytes_per_second",
            "Encoded bytes per second over the last seconds (times 8: the bitrate).",
            ["stream"],
            registry=registry,
        )
        self.fps = Gauge(
            "edged_stream_fps",
            "Encoded frames per second over the last seconds.",
            ["stream"],
            registry=registry,
        )
        self.encoder = Gauge(
            "edged_encoder_info",
            "The encoder a stream uses (value 1).",
            ["stream", "encoder", "hardware"],
            registry=registry,
        )
        self.encode_seconds = Histogram(
            "edged_encode_seconds",
            "Time to encode one frame.",
            ["stream"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.temperature = Gauge(
            "edged_temperature_celsius", "Temperature by sensor.", ["sensor"], registry=registry
        )
        self.temperature_limit = Gauge(
            "edged_board_temperature_limit_celsius",
            "The board profile's thermal limits, by kind: soft (streams step down while above) "
            "and hard (every step at once).",
            ["kind"],
            registry=registry,
        )
        self.throttle = Gauge(
            "edged_throttle_level",
            "Thermal step-down level of a stream (0 = none).",
            ["stream"],
            registry=registry,
        )
        self.recording = Gauge(
            "edged_recording_active",
            "1 while a stream records; 0 when retention had to stop it (disk full).",
            ["stream"],
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "edged_spool_bytes", "Bytes of recordings in the spool.", registry=registry
        )
        self.audio_dropped = Counter(
            "edged_audio_samples_dropped",
            "Audio samples lost, by stage: capture (never delivered by the source, filled with "
            "silence), sync (dropped to keep the sound on the video's clock), output (a slow "
            "consumer), opus (not heard by WebRTC viewers: the Opus encoder failed).",
            ["stream", "stage"],
            registry=registry,
        )
        self.audio_level = Gauge(
            "edged_audio_level_dbfs",
            "Peak level of a stream's sound over the last whole second, in dBFS (0 is full "
            "scale); -120 for digital silence or quieter, and for a sound source that failed; "
            "no series for a stream without sound or stopped.",
            ["stream"],
            registry=registry,
        )

    def stream(self, name: str) -> None:
        """Create every series of a stream at zero, so rates start from a known value."""
        self.captured.labels(name)
        self.encoded.labels(name)
        self.encoded_bytes.labels(name)
        for stage in ("capture", "encode", "output"):
            self.dropped.labels(name, stage)


PLAYER_KINDS = ("live-whep", "live-hls", "watch")
# The watch page's reports of a view (web/telemetry.py), as edged_clip_reports_total counts them.
CLIP_REPORTS = ("start", "first-frame", "watched-3s", "watched-10s", "watched-30s", "end", "unmute")
PLAYER_FIRST_FRAME_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class LiveMetrics:
    """Viewers and bytes out of the live views, by stream and protocol (webrtc, hls)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.viewers = Gauge(
            "edged_live_viewers",
            "Viewers now, by protocol (HLS: clients that fetched a segment within three segment "
            "durations).",
            ["stream", "protocol"],
            registry=registry,
        )
        self.bytes = Counter(
            "edged_live_bytes",
            "Media bytes sent to live viewers, by protocol.",
            ["stream", "protocol"],
            registry=registry,
        )
        self.player_first_frame = Histogram(
            "edged_player_first_frame_seconds",
            "Navigation to the first frame a guest's browser showed, as its page reported it, "
            "by kind (live-whep, live-hls, watch).",
            ["kind"],
            buckets=PLAYER_FIRST_FRAME_BUCKETS,
            registry=registry,
        )
        for kind in PLAYER_KINDS:
            self.player_first_frame.labels(kind)


class CacheMetrics:
    """The clip cache: requests by result, bytes held, clips by pinned."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "edged_cache_requests",
            "Clip requests by result: hit_memory, hit, pull_through, miss, peer (from a peer box).",
            ["result"],
            registry=registry,
        )
        for result in ("hit_memory", "hit", "pull_through", "miss", "peer"):
            self.requests.labels(result)
        self.bytes = Gauge("edged_cache_bytes", "Bytes of clips in the cache.", registry=registry)
        self.assets = Gauge(
            "edged_cache_assets", "Clips in the cache, by pinned.", ["pinned"], registry=registry
        )


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
        self.configured = Gauge(
            "edged_upstream_configured",
            "1 when an upstream is configured (sync on), 0 when sync is off.",
            registry=registry,
        )
        self.upstream_up = Gauge(
            "edged_upstream_up",
            "1 when the upstream answers and accepts the credentials, else 0.",
            registry=registry,
        )
        self.uplinks = UplinkMetrics(registry)


class UplinkMetrics:
    """Each uplink of the uploader, by interface name (edged_uplink_*)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "edged_uplink_up",
            "1 when the uplink may carry uploads, 0 while it is dropped after a failure.",
            ["interface"],
            registry=registry,
        )
        self.bytes = Counter(
            "edged_uplink_bytes",
            "Bytes of uploads sent by the uplink.",
            ["interface"],
            registry=registry,
        )
        self.throughput = Gauge(
            "edged_uplink_throughput_bytes_per_second",
            "Upload throughput measured on the uplink (a running average; 0 before the first).",
            ["interface"],
            registry=registry,
        )
        self.budget_left = Gauge(
            "edged_uplink_budget_remaining_bytes",
            "Bytes the uplink may still send today (only uplinks with a daily budget).",
            ["interface"],
            registry=registry,
        )

    def remove(self, interface: str) -> None:
        """Forget an interface that is gone."""
        for family in (self.up, self.bytes, self.throughput, self.budget_left):
            try:
                family.remove(interface)
            except KeyError:
                continue


class RestreamMetrics:
    """Each restream destination, by stream and destination (its configured or derived name,
    never the URL or the key)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "edged_restream_up",
            "1 while the destination is publishing, else 0.",
            ["stream", "destination"],
            registry=registry,
        )
        self.enabled = Gauge(
            "edged_restream_enabled",
            "1 while the destination is switched on (config, API or CLI), else 0.",
            ["stream", "destination"],
            registry=registry,
        )
        self.bytes = Counter(
            "edged_restream_bytes",
            "Media bytes published to the destination.",
            ["stream", "destination"],
            registry=registry,
        )
        self.reconnects = Counter(
            "edged_restream_reconnects",
            "Failed attempts or sessions after which the destination connects again.",
            ["stream", "destination"],
            registry=registry,
        )

    def destination(self, stream: str, destination: str, *, enabled: bool) -> None:
        """Every series of a destination from the start (rate() and the alert see it)."""
        self.up.labels(stream, destination).set(0)
        self.enabled.labels(stream, destination).set(1 if enabled else 0)
        self.bytes.labels(stream, destination)
        self.reconnects.labels(stream, destination)


class ClipMetrics:
    """Guests' watch-page reports (web/telemetry.py), per clip on the box: views (a play
    start) and 10-second retention, reports by kind, seconds watched at the end. The counts per
    clip are also kept as plain numbers for sinking and the stats API (since the start)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.views = Counter(
            "edged_clip_views",
            "Watch-page views that started playing, by clip (a clip on the box).",
            ["clip"],
            registry=registry,
        )
        self.retained_10s = Counter(
            "edged_clip_retained_10s",
            "Watch-page views that played 10 s of the clip, by clip (a clip on the box).",
            ["clip"],
            registry=registry,
        )
        self.reports = Counter(
            "edged_clip_reports",
            "Watch-page reports taken, by report (start, first-frame, watched-3s, watched-10s, "
            "watched-30s, end, unmute).",
            ["report"],
            registry=registry,
        )
        for report in CLIP_REPORTS:
            self.reports.labels(report)
        self.watched = Histogram(
            "edged_clip_watched_seconds",
            "Seconds of a clip a watch page played, as it reported when the guest left.",
            buckets=(3.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
            registry=registry,
        )
        self._counts: dict[str, ClipCounts] = {}

    def view(self, clip: str) -> None:
        self.views.labels(clip).inc()
        counts = self._counts.get(clip, ClipCounts())
        self._counts[clip] = replace(counts, views=counts.views + 1)

    def retained(self, clip: str) -> None:
        self.retained_10s.labels(clip).inc()
        counts = self._counts.get(clip, ClipCounts())
        self._counts[clip] = replace(counts, retained_10s=counts.retained_10s + 1)

    def counts(self) -> dict[str, ClipCounts]:
        """Views and 10-second retention per clip since the start (clips never reported: none)."""
        return dict(self._counts)


JOB_SECONDS_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class ClipJobMetrics:
    """The clip job queue: jobs by state, and how long a finished job took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge(
            "edged_clip_jobs",
            "Clip jobs in the journal, by state (queued, running, paused, done, failed).",
            ["state"],
            registry=registry,
        )
        for state in ("queued", "running", "paused", "done", "failed"):
            self.jobs.labels(state)
        self.seconds = Histogram(
            "edged_clip_job_seconds",
            "Seconds from a clip job's start to done, pauses for the live streams included.",
            buckets=JOB_SECONDS_BUCKETS,
            registry=registry,
        )


class GuestMetrics:
    """Guests' visits (and what else guests do), by configured campaign (guest/campaigns.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.visits = Counter(
            "edged_guest_visits",
            "Views of the event page, by campaign (a configured name, or none).",
            ["campaign"],
            registry=registry,
        )
        self.signups = Counter(
            "edged_guest_signups",
            "Guests signed up (new rows; a repeat is not counted), by campaign.",
            ["campaign"],
            registry=registry,
        )
        self.clip_views = Counter(
            "edged_guest_clip_views",
            "Watch-page views that started playing, by the campaign the page reported (a "
            "configured name, or none).",
            ["campaign"],
            registry=registry,
        )

    def campaigns(self, labels: Iterable[str]) -> None:
        """Each campaign's visits and clip views at 0 from the start (rate() sees the first)."""
        for name in labels:
            self.visits.labels(name)
            self.clip_views.labels(name)


class BoxMetrics:
    """What the fleet's alerts compare a box with: its disk floor and the cameras it should
    stream (the board's temperature limits are StreamMetrics', set by the thermal governor)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.min_free_bytes = Gauge(
            "edged_disk_min_free_bytes",
            "[storage] min_free_bytes: under it, retention deletes uploaded recordings, then "
            "stops recording.",
            registry=registry,
        )
        self.cameras_expected = Gauge(
            "edged_cameras_expected",
            "[node] expected_cameras: cameras and capture cards the box should stream (0: not "
            "said).",
            registry=registry,
        )
        self.cameras_present = Gauge(
            "edged_cameras_present",
            "Cameras and capture cards the box streams now, running or restarting (the test "
            "pattern not counted).",
            registry=registry,
        )

    def set_facts(
        self, *, min_free_bytes: int, expected_cameras: int, present: Callable[[], int]
    ) -> None:
        self.min_free_bytes.set(min_free_bytes)
        self.cameras_expected.set(expected_cameras)
        self.cameras_present.set_function(lambda: float(present()))


class Metrics:
    """Every metric edged exports, grouped by the subsystem that feeds it."""

    def __init__(
        self,
        *,
        version: str,
        node: str,
        event: str,
        data_dir: Path,
        throttled_file: Path = PI_THROTTLED_FILE,
    ) -> None:
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
        self.clock_synchronized = Gauge(
            "edged_clock_synchronized",
            "1 when the kernel calls the system clock synchronized (NTP), 0 when not, NaN when "
            "it cannot tell.",
            registry=self.registry,
        )
        self.clock_synchronized.set_function(_clock_synchronized)
        self.registry.register(SystemCollector(throttled_file))
        self.board = Gauge(
            "edged_board_info",
            "The detected board (value 1) and whether its profile has a hardware H.264 encoder.",
            ["board", "hardware_encoder"],
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "edged_first_byte_seconds",
            "Time from a request to its first byte, by kind (live, asset).",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.task_restarts = Counter(
            "edged_task_restarts",
            "Restarts of a long-lived task after an unexpected exception, by task.",
            ["task"],
            registry=self.registry,
        )
        self.restream = RestreamMetrics(self.registry)
        self.upload = UploadMetrics(self.registry)
        self.devices = DeviceMetrics(self.registry)
        self.streams = StreamMetrics(self.registry)
        self.live = LiveMetrics(self.registry)
        self.cache = CacheMetrics(self.registry)
        self.guest = GuestMetrics(self.registry)
        self.clips = ClipMetrics(self.registry)
        self.clip_jobs = ClipJobMetrics(self.registry)
        self.box = BoxMetrics(self.registry)

    def set_identity(self, *, version: str, node: str, event: str) -> None:
        """Set the labels of edged_build_info (an event id can change on reload)."""
        self.build_info.info({"version": version, "node": node, "event": event})

    def exposition(self) -> bytes:
        """The Prometheus text exposition of the whole registry."""
        return generate_latest(self.registry)
