"""`edged doctor`: the check the crew runs on the real box, each line OK, WARN or FAIL with what
to do. Blocking: a command, not part of the daemon."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from edged.cache.peerlink import PeerAddress, PeerSource
from edged.cache.peers import peers_off
from edged.clock import clock_synchronized
from edged.config import Config, NodeConfig, RestreamConfig, node_name
from edged.datalock import LOCK_NAME
from edged.devices import capture_cards, detect_board, sound
from edged.devices.classify import STREAMABLE, DeviceKind
from edged.devices.manager import Device, scan_all
from edged.discovery import (
    EDGED_SERVICE,
    Advertised,
    Peer,
    browse_peers,
    dns_label,
    read_advertised,
)
from edged.errors import EdgedError, StartupError
from edged.media.audio import AudioSpec, ensure_alsa_config
from edged.media.encoders import EncoderSettings, ProbeResult, candidates, probe
from edged.media.listen import Heard, listen_all
from edged.media.stream_plan import PlanConfig, wanted_streams
from edged.media.thermal import read_pi_throttled, read_temperatures
from edged.paths import read_private_file
from edged.restream.policy import (
    Stage,
    certificate_reason,
    failure_reason,
    mask_url,
    parse_address,
)
from edged.restream.probe import certificate_problem, system_ca_file
from edged.restream.record import read_record
from edged.s3bucket import UpstreamError
from edged.upload.setup import build_pool, build_store

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SANE_CLOCK_AFTER = 1_767_225_600  # 2026-01-01: a box that believes it is earlier lost its clock
SILENT_DBFS = -60.0  # the silence alert's threshold (configs/prometheus/edged-rules.yml)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    advice: str = ""


def board_check(name: str, reason: str, is_fallback: bool) -> Check:
    """The board line: a board without its own profile runs on the generic one."""
    return Check(
        "board",
        WARN if is_fallback else OK,
        f"{name}: {reason}",
        "add a profile to hardware/boards for this board" if is_fallback else "",
    )


def camera_checks(devices: Sequence[Device]) -> list[Check]:
    """A line per camera or capture card; a WARN when there is none."""
    cameras = [d for d in devices if d.kind in STREAMABLE]
    if not cameras:
        csi = any(d.kind is DeviceKind.CSI_CAMERA for d in devices)
        return [
            Check(
                "cameras",
                WARN,
                "no USB camera or capture card found"
                + (" (a CSI camera is present)" if csi else ""),
                "plug in a UVC webcam or HDMI capture card; until then the test pattern streams",
            )
        ]
    checks = []
    for device in cameras:
        modes = device.capabilities.modes if device.capabilities else ()
        best = max(modes, key=lambda m: (m.width * m.height, m.max_fps), default=None)
        detail = f"{device.node} {device.kind.value} {device.label!r} as stream {device.stream}"
        if best is not None:
            detail += f", up to {best.width}x{best.height}@{best.max_fps:g} {best.pixel_format}"
        checks.append(
            Check(f"camera {device.stream}", WARN if device.problem else OK, detail, device.problem)
        )
    return checks


def _board_and_devices(config: Config) -> tuple[list[Check], Any, list[Device]]:
    devices = scan_all(capture_cards())
    board = detect_board(Path("/"), {device.name for device in devices})
    checks = [board_check(board.profile.name, board.reason, board.profile.is_fallback)]
    return checks + camera_checks(devices), board, devices


def audio_check(
    name: str, device: str | None, heard: Heard | None, *, camera: bool, assigned: bool = True
) -> Check:
    """A stream's sound (`device` None: it has none; `camera`: a camera's stream, which should)
    or a sound input no stream takes (`assigned` False), with what a second of it gave."""
    if device is None or heard is None:
        advice = "plug in its sound card or name a microphone in [audio] devices"
        return Check(name, WARN if camera else OK, "no audio device", advice if camera else "")
    spare = "" if assigned else "no stream takes it; "
    spare_advice = "" if assigned else "; name it for a stream in [audio] devices"
    if heard.error:
        return Check(
            name,
            WARN,
            f"{spare}{device}: cannot listen: {heard.error}",
            "busy while edged (or another program) records from it: stop that to listen; "
            "otherwise check that it is plugged in (arecord -l)" + spare_advice,
        )
    if heard.peak_dbfs < SILENT_DBFS or not heard.seconds:
        return Check(
            name,
            WARN,
            f"{spare}{device}: {heard.peak_dbfs:.1f} dBFS: input muted or unplugged?",
            "unmute the input (alsamixer), check the cable and that the source sends sound"
            + spare_advice,
        )
    return Check(
        name,
        OK if assigned else WARN,
        f"{spare}{device}: {heard.peak_dbfs:.1f} dBFS peak over {heard.seconds:.0f} s",
        spare_advice.removeprefix("; "),
    )


def _audio(config: Config, board: Any, devices: Sequence[Device]) -> list[Check]:
    """Each stream's sound as the daemon would choose it, and the inputs no stream takes; a
    second of each listened to, all at once."""
    if not config.audio.enabled:
        return [Check("audio", OK, "sound is off ([audio] enabled = false)")]
    streams = wanted_streams(devices, PlanConfig.build(config.media, board, config.audio))
    taken = {spec.audio.location for spec in streams.values() if spec.audio is not None}
    rate, bitrate = config.audio.sample_rate, config.audio.bitrate
    spare = [
        AudioSpec("alsa", alsa, rate, bitrate)
        for alsa in sound.unpaired(devices)
        if alsa not in taken
    ]
    sources = list(dict.fromkeys([*(s.audio for s in streams.values() if s.audio), *spare]))
    if any(source.kind == "alsa" for source in sources):
        ensure_alsa_config(os.environ)
    heard = dict(zip(sources, listen_all(sources), strict=True))
    checks = [
        audio_check(
            f"audio {name}",
            spec.audio.label if spec.audio else None,
            heard.get(spec.audio) if spec.audio else None,
            camera=spec.device is not None,
        )
        for name, spec in streams.items()
    ]
    for source in spare:
        checks.append(
            audio_check(
                f"audio {source.label}", source.label, heard[source], camera=False, assigned=False
            )
        )
    return checks


def encoder_checks(
    results: Sequence[ProbeResult], settings: EncoderSettings, has_hardware: bool
) -> list[Check]:
    """A line per encoder probed, then which one will be used and whether it keeps up."""
    checks = [
        Check(
            f"encoder {r.encoder}",
            OK if r.ok else WARN,
            (f"{r.fps:.0f} fps at {settings.width}x{settings.height}" if r.ok else r.reason),
            ""
            if r.ok
            else "normal where the box lacks this hardware; otherwise check its "
            "driver and that edged is in the video and render groups",
        )
        for r in results
    ]
    winner = next((r for r in results if r.ok), None)
    if winner is None:
        checks.append(Check("encoding", FAIL, "no H.264 encoder works", "reinstall edged (PyAV)"))
    elif has_hardware and not winner.hardware:
        checks.append(
            Check(
                "encoding",
                WARN,
                f"software encoder {winner.encoder} chosen on a board with a hardware encoder",
                "check the encoder device permissions (video group) and drivers",
            )
        )
    else:
        checks.append(Check("encoding", OK, f"{winner.encoder} will be used"))
    if winner is not None and winner.fps and winner.fps < settings.fps:
        checks.append(
            Check(
                "encoding speed",
                WARN,
                f"{winner.encoder} reaches {winner.fps:.0f} fps, below {settings.fps}",
                "lower the resolution or frame rate",
            )
        )
    return checks


def _encoders(board: Any) -> list[Check]:
    defaults = board.profile.defaults["webcam"]
    settings = EncoderSettings(defaults.width, defaults.height, defaults.fps, defaults.bitrate)
    results = [probe(name, settings) for name in candidates(board.profile.encoders)]
    return encoder_checks(results, settings, board.profile.hardware_encoder)


def disk_check(free: int, total: int, spool: int, minimum: int) -> Check:
    """The disk line from free and total bytes, the spool's size and [storage] min_free_bytes."""
    detail = (
        f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB; spool {spool / 2**20:.0f} MiB"
    )
    if free < minimum:
        return Check(
            "disk",
            FAIL,
            detail,
            "free space: recording stops below "
            f"{minimum / 2**30:.1f} GiB while footage waits for upload",
        )
    if free < 2 * minimum:
        return Check("disk", WARN, detail, "little headroom; let uploads finish or add storage")
    return Check("disk", OK, detail)


def _disk(config: Config, data_dir: Path) -> Check:
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    try:
        usage = psutil.disk_usage(str(existing))
    except OSError as error:
        return Check(
            "disk",
            FAIL,
            f"cannot read {data_dir}: {error.strerror}",
            "fix --data-dir or its permissions",
        )
    spool = sum(p.stat().st_size for p in (data_dir / "spool").glob("*/*.mp4"))
    return disk_check(usage.free, usage.total, spool, config.storage.min_free_bytes)


def temperature_checks(
    readings: Mapping[str, float], soft: float, hard: float, throttled: bool | None
) -> list[Check]:
    """The hottest sensor against the board's limits, and the Pi firmware's throttling (None:
    not a Pi)."""
    if not readings:
        checks = [
            Check(
                "temperature",
                WARN,
                "no temperature sensor readable",
                "normal in a VM; on a real box check /sys/class/thermal",
            )
        ]
    else:
        sensor, hottest = max(readings.items(), key=lambda item: item[1])
        status = FAIL if hottest >= hard else WARN if hottest >= soft else OK
        checks = [
            Check(
                "temperature",
                status,
                f"{hottest:.0f} °C ({sensor}); limits {soft:.0f}/{hard:.0f} °C",
                "" if status == OK else "shade and ventilate the box",
            )
        ]
    if throttled is not None:
        checks.append(
            Check(
                "pi throttling",
                WARN if throttled else OK,
                "firmware throttles now" if throttled else "not throttled",
                "use the official power supply and cooling" if throttled else "",
            )
        )
    return checks


def _temperature(board: Any) -> list[Check]:
    profile = board.profile
    return temperature_checks(
        read_temperatures(),
        profile.soft_limit_celsius,
        profile.hard_limit_celsius,
        read_pi_throttled(),
    )


UPSTREAM_OFF = Check(
    "upstream",
    WARN,
    "sync is off ([upstream] endpoint is empty)",
    "set [upstream] endpoint, access_key and secret_key_file to ship footage",
)


def upstream_check(endpoint: str, bucket: str, failure: EdgedError | None) -> Check:
    """The upstream line from what probing it raised (None: it answered)."""
    if isinstance(failure, UpstreamError):
        return Check(
            "upstream",
            FAIL,
            str(failure),
            "check the venue link, the endpoint and "
            "the credentials; footage is kept until it can go",
        )
    if failure is not None:
        return Check("credentials", FAIL, str(failure), "fix the [upstream] settings")
    return Check(
        "upstream",
        OK,
        f"{endpoint} answers; bucket {bucket} reachable with these credentials",
    )


def _upstream(config: Config) -> list[Check]:
    if not config.upstream.endpoint:
        return [UPSTREAM_OFF]
    failure: EdgedError | None = None
    try:
        store = build_store(config, node_name(config, socket.gethostname()))
        if store is None:
            return []
        store.probe()
    except EdgedError as error:
        failure = error
    return [upstream_check(config.upstream.endpoint, config.upstream.bucket, failure)]


def uplink_check(row: Mapping[str, Any]) -> Check:
    """One uplink's line from the pool's description of it (UplinkPool.describe)."""
    name = f"uplink {row['interface']}"
    facts = [
        row["address"] or "the kernel's choice of address",
        "up" if row["up"] else "down",
        *([f"{row['speed_mbps']} Mbit/s"] if row["speed_mbps"] else []),
        "metered" if row["metered"] else "unmetered",
        "carries " + ", ".join(row["classes"]),
        "route to upstream: " + {True: "yes", False: "no", None: "not checked"}[row["route"]],
    ]
    if row["budget_left_bytes"] is not None:
        facts.append(f"budget left today {row['budget_left_bytes']} bytes")
    detail = "; ".join(facts)
    if row["route"] is False:
        return Check(name, WARN, detail, "this uplink does not reach the upstream; the others go")
    if row["budget_left_bytes"] == 0:
        return Check(name, WARN, detail, "its daily budget is spent; it carries again tomorrow")
    return Check(name, OK, detail)


def _uplinks(config: Config, data_dir: Path) -> list[Check]:
    if not config.upstream.endpoint:
        return []
    node = node_name(config, socket.gethostname())
    pool = build_pool(config, data_dir, node, None, None)
    asyncio.run(pool.refresh())
    return [uplink_check(row) for row in pool.describe()]


def mdns_check(
    *, enabled: bool, requested: str, advertised: Advertised | None, answering: set[str]
) -> Check:
    """What to say about mDNS, from the running daemon's own record (None: no daemon runs here)
    and the instance names that answered a browse; never a name the daemon did not advertise."""
    others = f"; boxes answering: {', '.join(sorted(answering))}" if answering else ""
    if not enabled:
        return Check(
            "mdns",
            WARN,
            f"mDNS is off ([mdns] enabled = false): phones cannot find {requested}.local{others}",
            "set [mdns] enabled = true, or give the crew the box's address",
        )
    if advertised is None:
        return Check(
            "mdns",
            WARN,
            f"edged is not running on this data dir, so nothing is advertised (it would ask "
            f"for {requested}.local){others}",
            "start edged (systemctl start edged), or pass the --data-dir it runs on",
        )
    renamed = (
        f" ({advertised.requested}.local is taken on this LAN)"
        if advertised.name != advertised.requested
        else ""
    )
    if advertised.name in answering:
        return Check("mdns", OK, f"{advertised.name}.local advertised as {EDGED_SERVICE}{renamed}")
    return Check(
        "mdns",
        WARN,
        f"edged advertises {advertised.name}.local{renamed}, but it did not answer here{others}",
        "allow multicast (UDP 5353) on this network and check [mdns] interfaces",
    )


def advertised_by_running_daemon(data_dir: Path) -> Advertised | None:
    """The advertised name the daemon on `data_dir` wrote, if that daemon still runs; OSError
    when the data dir cannot be read."""
    advertised = read_advertised(data_dir)
    if advertised is None:
        return None
    try:
        holder = (data_dir / LOCK_NAME).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if holder != str(advertised.pid) or not _alive(advertised.pid):
        return None  # a daemon that was killed: its record stayed behind
    return advertised


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's (edged under systemd, doctor run by the crew)
    return True


def _browse(config: Config) -> list[Peer] | OSError:
    """The edged boxes answering mDNS on the LAN, or why they cannot be asked."""
    try:
        return asyncio.run(browse_peers(2.0, config.mdns.interfaces))
    except OSError as error:
        return error


def _mdns(config: Config, data_dir: Path, peers: list[Peer] | OSError) -> Check:
    requested = dns_label(node_name(config, socket.gethostname()))
    if isinstance(peers, OSError):
        return Check("mdns", WARN, f"cannot browse mDNS: {peers}", "allow UDP 5353 (multicast)")
    advertised = None
    try:
        if config.mdns.enabled:
            advertised = advertised_by_running_daemon(data_dir)
    except OSError as error:
        return Check(
            "mdns",
            WARN,
            f"cannot read which name edged advertises from {data_dir}: {error.strerror}",
            "run doctor as the user edged runs as (sudo -u edged edged doctor)",
        )
    return mdns_check(
        enabled=config.mdns.enabled,
        requested=requested,
        advertised=advertised,
        answering={peer.instance for peer in peers},
    )


PEERS_ADVICE = "the same [peers] secret_file and [node] event on every box of the event"


def peers_check(
    *,
    enabled: bool,
    off: str,
    secret_problem: str,
    event: str,
    answers: Mapping[str, str],
    browsed: bool = True,
) -> Check:
    """The peers line. `enabled`: [peers] and [mdns] both on; `off`: why replication stays off
    anyway ("" = on; peers_off); `secret_problem`: why the secret cannot be used (the daemon
    would not start); `answers`: each other box of this event answering mDNS -> "" when it
    takes this box's signed requests, else why not; `browsed`: False when mDNS could not be
    asked at all."""
    boxes = ", ".join(sorted(answers))
    if not enabled:
        return Check(
            "peers",
            OK,
            "peer replication switched off ([peers] enabled = false or [mdns] enabled = false)",
        )
    if off:
        if not answers:
            return Check("peers", OK, f"off: {off}")
        return Check(
            "peers",
            WARN,
            f"off ({off}), yet boxes of event {event!r} answer: {boxes}; no clip is shared",
            PEERS_ADVICE,
        )
    if secret_problem:
        return Check("peers", FAIL, secret_problem, "fix [peers] secret_file: edged will not start")
    if not browsed:
        return Check("peers", WARN, "cannot browse mDNS: no peer can be found", "see the mdns line")
    if not answers:
        return Check(
            "peers",
            WARN,
            f"no other box of event {event!r} answers on mDNS: no clip can come from a peer",
            "switch the other boxes on, on this LAN, with the same [node] event",
        )
    refusing = [f"{node}: {why}" for node, why in sorted(answers.items()) if why]
    if refusing:
        return Check("peers", WARN, "; ".join(refusing), PEERS_ADVICE)
    return Check("peers", OK, f"sharing clips with {boxes} (event {event!r})")


def peers_line(config: Config, peers: list[Peer] | OSError) -> Check:
    """The peers line: each other box of this event asked once, signed with this box's key."""
    event, own = config.node.event, node_name(config, socket.gethostname())
    found = [] if isinstance(peers, OSError) else peers
    boxes = [p for p in found if p.event == event and p.node != own and p.addresses]
    enabled = config.peers.enabled and config.mdns.enabled
    off = peers_off(config.peers.secret_file, event, NodeConfig().event)
    answers = {box.node: "" for box in boxes}
    if not enabled or off:
        return peers_check(
            enabled=enabled, off=off, secret_problem="", event=event, answers=answers
        )
    try:
        secret = read_private_file(Path(config.peers.secret_file).expanduser(), "peer secret file")
        source = PeerSource(secret)
    except StartupError as error:
        return peers_check(
            enabled=True, off="", secret_problem=str(error), event=event, answers=answers
        )
    addresses = [PeerAddress(box.node, box.addresses[0], box.port, box.event) for box in boxes]
    if addresses:  # side by side: a silent box costs its timeout once, not once each
        with ThreadPoolExecutor(min(len(addresses), 8)) as pool:
            said = list(pool.map(source.answers, addresses))
        answers = {address.node: why for address, why in zip(addresses, said, strict=True)}
    return peers_check(
        enabled=True,
        off="",
        secret_problem="",
        event=event,
        answers=answers,
        browsed=not isinstance(peers, OSError),
    )


RESTREAM_ADVICE = "check the URL and the stream key (key_file); edged retries on its own"


def restream_check(
    destination: RestreamConfig,
    *,
    key_problem: str | None,
    row: Mapping[str, Any] | None,
    reach: str | None,
) -> Check:
    """A destination's line: its key file, then the running daemon's state of it (`row`; None:
    no daemon runs here) or, without a daemon, whether its server answers (`reach`: None, or why
    not). URLs masked: never the key."""
    name, masked = f"restream {destination.name}", mask_url(destination.url)
    if key_problem is not None:
        return Check(name, FAIL, key_problem, "make the key file mode 0600, or fix key_file")
    if row is None:
        if not destination.enabled:
            return Check(name, OK, f"{masked}: switched off in the config")
        if reach is not None:
            return Check(name, WARN, f"{masked}: {reach}", RESTREAM_ADVICE)
        where = parse_address(destination.url).hostport
        return Check(name, OK, f"{masked}: {where} answers (edged not running: not published)")
    state, reason, reconnects = row.get("state"), row.get("reason", ""), row.get("reconnects", 0)
    if state == "live":
        since = time.strftime("%H:%M:%S UTC", time.gmtime(float(row.get("since") or 0)))
        return Check(
            name,
            OK,
            f"{masked}: publishing {destination.stream} since {since} ({reconnects} reconnects)",
        )
    if state == "disabled":
        return Check(name, OK, f"{masked}: switched off", f"edged restream on {destination.name}")
    if state == "retrying":
        return Check(
            name, WARN, f"{masked}: {reason} ({reconnects} attempts failed)", RESTREAM_ADVICE
        )
    return Check(name, WARN, f"{masked}: {state}: {reason}", "")


def _key_problem(destination: RestreamConfig) -> str | None:
    if not destination.key_file:
        return None
    try:
        read_private_file(Path(destination.key_file).expanduser(), "key file")
    except StartupError as error:
        return str(error)
    return None


def _reach(destination: RestreamConfig, timeout: float = 3.0) -> str | None:
    """None when the destination's server takes a TCP connection, else why not."""
    address = parse_address(destination.url)
    try:
        socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except OSError:
        return failure_reason(Stage.RESOLVE, None, address, timeout)
    try:
        socket.create_connection((address.host, address.port), timeout).close()
    except TimeoutError:
        return failure_reason(Stage.CONNECT, errno.ETIMEDOUT, address, timeout)
    except OSError as error:
        return failure_reason(Stage.CONNECT, error.errno, address, timeout)
    if address.scheme == "rtmps" and destination.tls_verify:
        ca_file = destination.ca_file or system_ca_file()
        problem = certificate_problem(address, ca_file, timeout)
        if problem is not None:
            return certificate_reason(address, problem)
    return None


def _restream_rows(data_dir: Path) -> dict[str, dict[str, Any]] | None:
    """The running daemon's record of its destinations; None when no daemon runs here."""
    try:
        record = read_record(data_dir)
        holder = (data_dir / LOCK_NAME).read_text(encoding="ascii").strip() if record else ""
    except (OSError, UnicodeDecodeError):
        return None
    if record is None or holder != str(record[0]) or not _alive(record[0]):
        return None
    return record[1]


def run_restream_checks(config: Config, data_dir: Path) -> list[Check]:
    """The restream lines alone (run_checks has them among the others)."""
    rows = _restream_rows(data_dir)
    checks = []
    for destination in config.restream:
        row = rows.get(destination.name) if rows is not None else None
        reach = _reach(destination) if rows is None and destination.enabled else None
        checks.append(
            restream_check(destination, key_problem=_key_problem(destination), row=row, reach=reach)
        )
    return checks


def clock_check(now: float, kernel_synced: bool | None, timesyncd_synced: bool) -> Check:
    """The clock line from the time and what the kernel (adjtimex) and timesyncd say."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < SANE_CLOCK_AFTER:
        return Check(
            "clock",
            FAIL,
            f"clock says {stamp}",
            "set the time (NTP): uploads and HLS need a sane clock",
        )
    if kernel_synced is False:
        return Check(
            "clock",
            WARN,
            f"{stamp}, not synchronized (the kernel says so: adjtimex STA_UNSYNC)",
            "enable systemd-timesyncd or another NTP client and let it reach a server: "
            "segment names, dates and S3 request signatures follow this clock",
        )
    synced = kernel_synced is True or timesyncd_synced
    return Check(
        "clock",
        OK if synced else WARN,
        stamp + (", synchronized" if synced else ", NTP sync not confirmed"),
        "" if synced else "enable systemd-timesyncd or another NTP client",
    )


def _clock() -> Check:
    return clock_check(
        time.time(),
        clock_synchronized(),
        Path("/run/systemd/timesync/synchronized").exists(),
    )


def run_checks(config: Config, data_dir: Path) -> list[Check]:
    checks, board, devices = _board_and_devices(config)
    checks += _encoders(board)
    checks += _audio(config, board, devices)
    checks.append(_disk(config, data_dir))
    checks += _temperature(board)
    checks += _upstream(config)
    checks += _uplinks(config, data_dir)
    checks += run_restream_checks(config, data_dir)
    peers = _browse(config)
    checks.append(_mdns(config, data_dir, peers))
    checks.append(peers_line(config, peers))
    checks.append(_clock())
    return checks


def worst(checks: Sequence[Check]) -> str:
    """The summary status: FAIL if any check fails, else WARN if any warns, else OK."""
    statuses = {check.status for check in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def report(checks: list[Check]) -> dict[str, Any]:
    return {"status": worst(checks), "checks": [asdict(check) for check in checks]}


def print_report(checks: list[Check]) -> None:
    for check in checks:
        print(f"{check.status:4}  {check.name:22} {check.detail}")
        if check.advice:
            print(f"{'':28}-> {check.advice}")
