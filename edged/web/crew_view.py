"""What the crew screen shows, from the box's facts: a tile per camera, a line per concern, and
the doctor's warnings in plain words with what to do. Pure: the facts and the time come in; the
judgement is edged/doctor.py's own checks, fed with the running daemon's figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edged.config import RestreamConfig
from edged.doctor import (
    FAIL,
    OK,
    UPSTREAM_OFF,
    WARN,
    Check,
    audio_check,
    camera_checks,
    clock_check,
    disk_check,
    restream_check,
    temperature_checks,
    upstream_check,
)
from edged.media.listen import Heard
from edged.s3bucket import UpstreamError

UPSTREAM_DOWN = "the upstream does not answer now"


@dataclass(frozen=True)
class CameraFacts:
    """A running stream as the crew sees it: the status' fields and the metrics' figures."""

    stream: str
    state: str = "up"  # the pipeline's: starting, up, down, stopped
    reason: str = ""
    source: str = ""
    width: int = 0
    height: int = 0
    fps_target: float = 0.0
    fps: float | None = None  # measured (edged_stream_fps); None before the first figure
    drops: int = 0  # frames lost at every stage since the stream started
    audio: str = ""  # the status' audio line ("audio: hw:1", "no audio device", "video only: ...")
    audio_device: str | None = None
    audio_dbfs: float | None = None  # the last second's peak; None: no sound series
    recording: bool = False


@dataclass(frozen=True)
class BoxFacts:
    """Everything the screen is made from, gathered at `now` (crew.py reads them)."""

    now: float
    node: str = ""
    event: str = ""
    cameras: tuple[CameraFacts, ...] = ()
    camera_devices: int | None = None  # cameras and capture cards plugged in; None: unknown
    cameras_expected: int = 0  # [node] expected_cameras (0: not said)
    disk_free: int | None = None
    disk_total: int = 0
    spool_bytes: int = 0
    min_free_bytes: int = 0
    temperatures: Mapping[str, float] = field(default_factory=dict)
    soft_limit: float = 80.0
    hard_limit: float = 85.0
    throttled: bool | None = None  # the Pi firmware's flag; None: not a Pi
    upstream_configured: bool = False
    upstream_up: bool = False
    queue_files: int = 0
    queue_bytes: int = 0
    oldest_pending_seconds: float = 0.0
    restream: tuple[Mapping[str, Any], ...] = ()  # RestreamControl.status() rows
    signups: int | None = None  # None: sign-up is not running
    clock_synced: bool | None = None  # the kernel's word; None: it cannot tell
    timesyncd_synced: bool = False


def size(count: float) -> str:
    """Bytes as the crew reads them: 0 B, 512 KiB, 340 MiB, 12.3 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if unit == "GiB" else f"{count / scale:.0f} {unit}"
    return f"{count:.0f} B"


def duration(seconds: float) -> str:
    """A wait as the crew reads it: 40 s, 5 min, 2 h 10 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def level_text(dbfs: float | None) -> str:
    if dbfs is None:
        return "no sound"
    return "silent" if dbfs <= -120 else f"{dbfs:.0f} dBFS"


def should_record(camera: CameraFacts) -> bool:
    """Whether a stream not recording is news: the test pattern records only when asked."""
    return camera.source != "pattern"


def camera_tile(camera: CameraFacts) -> dict[str, Any]:
    running = camera.state == "up"
    fps = f"{camera.fps:.0f}" if camera.fps is not None else "-"
    return {
        "stream": camera.stream,
        "state": camera.state if running else f"{camera.state}: {camera.reason}".rstrip(": "),
        "ok": running,
        "poster": f"/live/{camera.stream}/poster.jpg",
        "fps": f"{fps}/{camera.fps_target:g} fps",
        "size": f"{camera.width}x{camera.height}" if camera.width else "",
        "drops": camera.drops,
        "audio": level_text(camera.audio_dbfs) if camera.audio_device else camera.audio,
        # the level as a bar's share: -60 dBFS (the silence line) is empty, 0 dBFS full
        "level": 0.0
        if camera.audio_dbfs is None
        else round(min(1.0, max(0.0, (camera.audio_dbfs + 60) / 60)), 2),
        "recording": camera.recording,
        "meter": camera.audio_device is not None,  # a level to show: the stream has sound
    }


def _line(label: str, value: str, status: str = OK) -> dict[str, str]:
    return {"label": label, "value": value, "status": status}


def _temperature_line(facts: BoxFacts) -> dict[str, str]:
    if not facts.temperatures:
        return _line("Temperature", "no sensor")
    sensor, hottest = max(facts.temperatures.items(), key=lambda item: item[1])
    status = FAIL if hottest >= facts.hard_limit else WARN if hottest >= facts.soft_limit else OK
    return _line("Temperature", f"{hottest:.0f} °C ({sensor})", status)


def _upload_lines(facts: BoxFacts) -> list[dict[str, str]]:
    backlog = "nothing waiting"
    if facts.queue_files:
        backlog = f"{facts.queue_files} files, {size(facts.queue_bytes)}"
        if facts.oldest_pending_seconds > 0:
            backlog += f", oldest {duration(facts.oldest_pending_seconds)}"
    if not facts.upstream_configured:
        upstream = _line("Upstream", "off: footage stays on the box", WARN)
    elif facts.upstream_up:
        upstream = _line("Upstream", "up")
    else:
        upstream = _line("Upstream", "down: footage waits", FAIL)
    return [_line("Upload backlog", backlog, WARN if facts.queue_files else OK), upstream]


def summary_lines(facts: BoxFacts) -> list[dict[str, str]]:
    """Recording, disk, temperature, upload backlog and upstream, signups: a line each."""
    recording = sum(1 for camera in facts.cameras if camera.recording)
    missing = any(should_record(c) and not c.recording for c in facts.cameras)
    lines = [
        _line("Recording", f"{recording} of {len(facts.cameras)} streams", WARN if missing else OK)
    ]
    if facts.disk_free is not None:
        disk = disk_check(
            facts.disk_free, facts.disk_total, facts.spool_bytes, facts.min_free_bytes
        )
        free = f"{size(facts.disk_free)} free of {size(facts.disk_total)}"
        lines.append(_line("Disk", free, disk.status))
    lines.append(_temperature_line(facts))
    lines += _upload_lines(facts)
    if facts.signups is not None:
        lines.append(_line("Sign-ups", str(facts.signups)))
    return lines


def restream_line(row: Mapping[str, Any]) -> dict[str, str]:
    state = str(row.get("state", ""))
    reason = str(row.get("reason") or "")
    status = OK if state in ("live", "disabled") else WARN
    return {
        "label": f"{row.get('name', '')} ({row.get('stream', '')})",
        "value": f"{state}: {reason}" if reason and status != OK else state,
        "status": status,
    }


# -- the doctor's findings ----------------------------------------------------------------------


def _stream_checks(camera: CameraFacts) -> list[Check]:
    """A stream's own lines: down, or not recording (not doctor's: it sees no daemon)."""
    checks = []
    if camera.state != "up":
        checks.append(
            Check(
                f"stream {camera.stream}",
                WARN if camera.state == "starting" else FAIL,
                f"{camera.state}: {camera.reason}".rstrip(": "),
                "check its cable; edged restarts it on its own",
            )
        )
    elif should_record(camera) and not camera.recording:
        checks.append(
            Check(
                f"recording {camera.stream}",
                WARN,
                "not recording",
                "free disk space: retention stops recording when the disk is full",
            )
        )
    return checks


def _expected(facts: BoxFacts) -> list[Check]:
    """Fewer cameras streaming than [node] expected_cameras says (the fleet's alert too)."""
    present = sum(1 for camera in facts.cameras if camera.source != "pattern")
    if present >= facts.cameras_expected:
        return []
    detail = f"{present} of {facts.cameras_expected} expected cameras stream"
    return [
        Check("expected", WARN, detail, "check each camera's cable and power; plug it in again")
    ]


def _audio(camera: CameraFacts) -> Check:
    heard = None
    if camera.audio_device and camera.audio_dbfs is not None:
        heard = Heard(peak_dbfs=camera.audio_dbfs, seconds=1.0)
    elif camera.audio_device and camera.audio.startswith("video only"):
        heard = Heard(peak_dbfs=float("-inf"), error=camera.audio.removeprefix("video only: "))
    return audio_check(
        f"audio {camera.stream}",
        camera.audio_device,
        heard,
        camera=camera.source == "v4l2",
    )


def _restream(row: Mapping[str, Any]) -> Check:
    destination = RestreamConfig(
        stream=str(row.get("stream", "")),
        url=str(row.get("url", "")),
        name=str(row.get("name", "")),
        enabled=bool(row.get("enabled", True)),
    )
    return restream_check(destination, key_problem=None, row=row, reach=None)


def doctor_findings(facts: BoxFacts) -> list[Check]:
    """The doctor's checks that a running daemon's figures can answer, in the doctor's order."""
    checks: list[Check] = []
    if facts.camera_devices == 0:
        checks += camera_checks([])
    checks += _expected(facts)
    for camera in facts.cameras:
        checks += _stream_checks(camera)
        checks.append(_audio(camera))
    if facts.disk_free is not None:
        checks.append(
            disk_check(facts.disk_free, facts.disk_total, facts.spool_bytes, facts.min_free_bytes)
        )
    checks += temperature_checks(
        facts.temperatures, facts.soft_limit, facts.hard_limit, facts.throttled
    )
    if not facts.upstream_configured:
        checks.append(UPSTREAM_OFF)
    elif not facts.upstream_up:
        checks.append(upstream_check("", "", UpstreamError(UPSTREAM_DOWN)))
    checks += [_restream(row) for row in facts.restream]
    checks.append(clock_check(facts.now, facts.clock_synced, facts.timesyncd_synced))
    return checks


# The doctor's line names, as a heading the crew reads at a glance.
HEADINGS = {
    "cameras": "No camera plugged in",
    "expected": "A camera is missing",
    "disk": "Disk space is low",
    "temperature": "Heat",
    "pi throttling": "The box slows itself down",
    "upstream": "Footage is not being uploaded",
    "clock": "The clock may be wrong",
}
PREFIX_HEADINGS = {
    "stream": "Camera {} is not streaming",
    "recording": "Camera {} is not recording",
    "audio": "Sound of {}",
    "restream": "Restream {} is not live",
    "camera": "Camera {}",
}


def heading(check: Check) -> str:
    """A check's plain heading: what is wrong, in the crew's words."""
    if check.name == "temperature" and "no temperature sensor" in check.detail:
        return "Temperature unknown"
    if check.name in HEADINGS:
        return HEADINGS[check.name]
    prefix, _, subject = check.name.partition(" ")
    template = PREFIX_HEADINGS.get(prefix)
    return template.format(subject) if template and subject else check.name.capitalize()


def warnings(checks: Sequence[Check]) -> list[dict[str, str]]:
    """Every check that is not OK, failures first: its heading, what the doctor found, what to
    do."""
    shown = [check for check in checks if check.status != OK]
    shown.sort(key=lambda check: check.status != FAIL)
    return [
        {
            "level": check.status.lower(),
            "title": heading(check),
            "detail": check.detail,
            "advice": check.advice,
        }
        for check in shown
    ]


def crew_state(facts: BoxFacts) -> dict[str, Any]:
    """The JSON the crew screen draws itself from."""
    return {
        "node": facts.node,
        "event": facts.event,
        "at": facts.now,
        "cameras": [camera_tile(camera) for camera in facts.cameras],
        "lines": summary_lines(facts),
        "restream": [restream_line(row) for row in facts.restream],
        "warnings": warnings(doctor_findings(facts)),
    }
