"""Restreaming with a real RTMP server (nginx + libnginx-mod-rtmp on loopback): the daemon pushes
the test pattern and its sound as encoded; a PyAV client pulls them from nginx and decodes them;
with nginx gone the recording and the live view go on (exact frame accounting), the destination
retries and publishes again once nginx is back; a refused port and a refused key each give a
clear reason; the stream key never shows in the log, the API or the metrics."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import pytest
import tomli_w

from edged import config as config_module
from edged import doctor
from tests.integration.test_daemon import http
from tests.integration.test_recording import FINAL
from tests.integration.test_recording_audio import SINE
from tests.rtmp_server import (
    Nginx,
    PublishCheck,
    TlsFront,
    pull,
    rtmp_module,
    running_nginx,
    self_signed,
)
from tests.support import DaemonProcess, loopback_config, run_edged, until, write_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(rtmp_module() is None, reason="libnginx-mod-rtmp is not installed"),
]

KEY = "sk-live-5f3a9c1e77d2"  # a stream key: must never leave edged
STREAM = "test-pattern"
FPS = 15
PLAYLIST = f"/live/{STREAM}/index.m3u8"
MEDIA = {
    "pattern_size": "320x240",
    "pattern_fps": FPS,
    "gop_seconds": 1.0,
    "segment_seconds": 2.0,
    "record_test_pattern": True,
    "audio_stand_in": SINE,
}
FAST = {"retry_min_seconds": 0.2, "retry_max_seconds": 1.0, "timeout_seconds": 3.0}

StartRestreaming = Callable[[Sequence[Mapping[str, Any]]], DaemonProcess]


def key_file(tmp_path: Path, key: str, name: str = "stream.key") -> Path:
    path = tmp_path / name
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def start_restreaming(tmp_path: Path) -> Iterator[StartRestreaming]:
    """A daemon with the test pattern and its sound, recording, and `[[restream]]` tables."""
    started: list[DaemonProcess] = []

    def start(destinations: Sequence[Mapping[str, Any]]) -> DaemonProcess:
        name = f"box{len(started)}"
        text = loopback_config(name, {"mdns": {"enabled": False}, "media": MEDIA})
        text += tomli_w.dumps({"restream": [{**FAST, **entry} for entry in destinations]})
        config = write_config(tmp_path / f"{name}.toml", text)
        data_dir = tmp_path / f"{name}-data"
        daemon = DaemonProcess(
            ["--config", str(config), "--data-dir", str(data_dir)],
            data_dir=data_dir,
            config_file=config,
        )
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def named_for(front: TlsFront, address: str) -> TlsFront:
    """`front` with a certificate (its own CA) for `address` instead of 127.0.0.1."""
    front.cert_file, key = self_signed(front.cert_file.parent, address)
    front._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    front._context.load_cert_chain(front.cert_file, key)
    return front


def first_times(url: str, limit: float = 20.0) -> tuple[float, float]:
    """The media time of the first picture and of the first sound a player decodes (blocking)."""
    found: dict[str, float] = {}
    container: Any
    with av.open(url, timeout=limit, options={"rtmp_live": "live"}) as container:
        for packet in container.demux():
            for frame in packet.decode():
                kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
                if frame.time is not None:
                    found.setdefault(kind, float(frame.time))
            if len(found) == 2:
                return found["video"], found["audio"]
    raise AssertionError(f"no picture and sound from the pull: {found}")


def crew_token(daemon: DaemonProcess) -> str:
    assert daemon.data_dir is not None
    return (daemon.data_dir / "admin.token").read_text().strip()


def destinations(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    status, body = http(daemon.url + "/api/v1/restream", token=crew_token(daemon))
    assert status == 200, body
    return {entry["name"]: entry for entry in json.loads(body)["destinations"]}


def state_of(daemon: DaemonProcess, name: str, state: str) -> dict[str, Any] | None:
    entry = destinations(daemon)[name]
    return entry if entry["state"] == state else None


def newest_segment(daemon: DaemonProcess) -> int:
    status, body = http(daemon.url + PLAYLIST)
    numbers = (
        re.findall(r"^segment-[0-9a-f]{8}-(\d+)\.m4s$", body.decode(), re.M)
        if status == 200
        else []
    )
    return max((int(number) for number in numbers), default=-1)


def recorded(daemon: DaemonProcess) -> int:
    return sum(1 for line in daemon.lines if re.search(r"recorded \S+\.mp4: \d+ frames", line))


def edged_restream(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    assert daemon.config_file is not None and daemon.data_dir is not None
    common = ("--config", str(daemon.config_file), "--data-dir", str(daemon.data_dir))
    return run_edged("restream", args[0], *common, "--url", daemon.url, *args[1:])


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.timeout(90)
def test_push_pull_outage_and_reconnect(
    start_restreaming: StartRestreaming, tmp_path: Path
) -> None:
    server = Nginx(tmp_path / "nginx")
    server.start()
    try:
        daemon = start_restreaming(
            [{"stream": STREAM, "url": server.url(), "key_file": str(key_file(tmp_path, KEY))}]
        )
        (name,) = destinations(daemon)
        assert name == "127-0-0-1-test-pattern"
        until(lambda: state_of(daemon, name, "live"), 20, "publishing")
        first = pull(server.url(KEY), frames=2 * FPS, audio_seconds=1.0)
        assert first.video_extradata > 0  # the AVC sequence header reached the player
        # Sound and pictures on one clock: their first media times within a GOP (review 18, 13).
        video_start, audio_start = first_times(server.url(KEY))
        assert abs(video_start - audio_start) < 1.0  # MEDIA gop_seconds
        assert first.size == (320, 240) and first.audio_streams == 1

        server.stop()  # the platform is gone: the session is lost, then retries are refused
        refused = f"connection refused by 127.0.0.1:{server.port}"
        down = until(
            lambda: (
                (entry := state_of(daemon, name, "retrying"))
                and entry["reason"].startswith(refused)
                and entry
            ),
            20,
            "retrying",
        )
        lost = f"connection to 127.0.0.1:{server.port} lost (closed by the server)"
        daemon.seen_or_wait(re.compile(re.escape(lost)), 5)
        _, body = http(daemon.url + "/api/v1/streams", token=crew_token(daemon))
        (stream,) = json.loads(body)["streams"]
        assert stream["restream"][0]["state"] == "retrying"
        assert stream["restream"][0]["reason"] == down["reason"]
        # Without the token: no host, app or error of a platform, only counts (review 18, 7).
        assert http(daemon.url + "/api/v1/restream")[0] == 401
        _, body = http(daemon.url + "/api/v1/streams")
        (stream,) = json.loads(body)["streams"]
        assert stream["restream"] == {"live": 0, "not_live": 1}
        assert b"127.0.0.1:" not in body
        # The live view and the recording go on without it.
        segment, segments = newest_segment(daemon), recorded(daemon)
        daemon.wait_for(re.compile(r"recorded \S+\.mp4: \d+ frames"), 20)
        until(lambda: newest_segment(daemon) >= segment + 2, 20, "live segments while down")
        assert recorded(daemon) > segments

        server.start()  # back: publishing again, and a player decodes it
        again = until(lambda: state_of(daemon, name, "live"), 20, "publishing again")
        assert again["reconnects"] >= 1 and again["last_error"] == down["reason"]
        second = pull(server.url(KEY), frames=2 * FPS, audio_seconds=1.0)
        assert second.video_extradata > 0 and second.audio_streams == 1

        last = destinations(daemon)[name]
        _, metrics = http(daemon.url + "/metrics")
        assert daemon.stop() == 0
    finally:
        server.stop()

    frames = last["frames"]
    assert frames["sent"] > 0 and frames["dropped"] > 0  # dropped: what nginx missed
    assert frames["offered"] == frames["sent"] + frames["dropped"] + frames["queued"]
    exposition = metrics.decode()
    labels = f'destination="{name}",stream="{STREAM}"'
    assert f"edged_restream_up{{{labels}}} 1.0" in exposition
    assert f"edged_restream_enabled{{{labels}}} 1.0" in exposition
    assert re.search(rf"edged_restream_reconnects_total{{{labels}}} [1-9]", exposition)
    assert re.search(rf"edged_restream_bytes_total{{{labels}}} [1-9]", exposition)
    assert re.search(
        rf'edged_frames_dropped_total{{stage="restream",stream="{STREAM}"}} [1-9]', exposition
    )
    # The stream lost nothing to the outage: every frame encoded was recorded.
    final = next(match for line in daemon.lines if (match := FINAL.search(line)))
    counts = {key: int(value) for key, value in final.groupdict().items() if key != "stream"}
    assert counts["captured"] == counts["encoded"] + counts["encode"]
    assert counts["output"] == 0
    assert daemon.data_dir is not None
    spool = sorted((daemon.data_dir / "spool" / STREAM).glob("*.mp4"))
    assert sum(decoded_frames(path) for path in spool) == counts["encoded"]
    # The key never left edged: not in its log, its API answers or its metrics.
    text = "\n".join(daemon.lines)
    assert KEY not in text and KEY not in exposition
    assert "rtmp://127.0.0.1:" in text and "/live/****" in text


@pytest.mark.timeout(60)
def test_a_refused_port_and_a_refused_key_say_why(
    start_restreaming: StartRestreaming, tmp_path: Path
) -> None:
    with (
        PublishCheck(good_key="the-right-key") as check,
        running_nginx(tmp_path / "nginx", on_publish=check.url) as server,
    ):
        nobody = Nginx(tmp_path / "nobody")  # its port: nothing listens there
        daemon = start_restreaming(
            [
                {
                    "name": "wrong-key",
                    "stream": STREAM,
                    "url": server.url(),
                    "key_file": str(key_file(tmp_path, KEY)),
                },
                {"name": "no-server", "stream": STREAM, "url": nobody.url()},
                {"name": "no-host", "stream": STREAM, "url": "rtmp://no-such-host.invalid/app"},
            ]
        )
        refused = until(lambda: state_of(daemon, "wrong-key", "retrying"), 20, "key refused")
        assert refused["reason"] == (
            f"127.0.0.1:{server.port} refused to publish: check the application (live) and "
            "the stream key"
        )
        assert refused["url"] == f"rtmp://127.0.0.1:{server.port}/live/****"
        assert KEY in check.names  # nginx asked, and was told no
        nowhere = until(lambda: state_of(daemon, "no-server", "retrying"), 20, "no server")
        assert nowhere["reason"] == (
            f"connection refused by 127.0.0.1:{nobody.port}: no RTMP server listens there "
            "(check the URL)"
        )
        unknown_host = until(lambda: state_of(daemon, "no-host", "retrying"), 20, "no host")
        assert unknown_host["reason"] == "cannot resolve host no-such-host.invalid: check the URL"
        # Switching off takes the token (the CLI reads it from the data dir) and ends the retries.
        off = daemon.url + "/api/v1/restream/wrong-key/disable"
        assert http(off, method="POST")[0] == 401
        listed = edged_restream(daemon, "list")
        assert listed.returncode == 0
        line = next(row for row in listed.stdout.splitlines() if row.startswith("wrong-key"))
        assert " on  retrying " in line and "/live/****" in line and "refused to publish" in line
        switched = edged_restream(daemon, "off", "wrong-key")
        assert switched.returncode == 0 and " off " in switched.stdout
        until(lambda: state_of(daemon, "wrong-key", "disabled"), 10, "switched off")
        unknown = edged_restream(daemon, "on", "nothing")
        assert unknown.returncode == 1
        assert "no restream destination 'nothing'" in unknown.stderr
        # edged doctor reads the running daemon's record: one line per destination.
        assert daemon.config_file is not None and daemon.data_dir is not None
        config = config_module.load(daemon.config_file)
        lines = {check.name: check for check in doctor.run_restream_checks(config, daemon.data_dir)}
        assert lines["restream wrong-key"].status == doctor.OK
        assert lines["restream wrong-key"].detail.endswith("/live/****: switched off")
        assert lines["restream no-server"].status == doctor.WARN
        assert "connection refused by" in lines["restream no-server"].detail
        token = crew_token(daemon)
        answers = [
            http(daemon.url + path, token=token)[1]
            for path in ("/api/v1/restream", "/api/v1/streams")
        ]
        answers += [listed.stdout.encode(), switched.stdout.encode()]
        assert daemon.stop() == 0
        # Without the daemon, doctor tries the server itself (a TCP connection, no publish).
        lines = {check.name: check for check in doctor.run_restream_checks(config, daemon.data_dir)}
        assert lines["restream wrong-key"].status == doctor.OK
        assert "answers (edged not running: not published)" in lines["restream wrong-key"].detail
        assert lines["restream no-server"].status == doctor.WARN
    assert all(KEY.encode() not in answer for answer in answers)
    assert KEY not in "\n".join(daemon.lines)
    # One warning per reason, not one per retry.
    warnings = [line for line in daemon.lines if "wrong-key" in line and "-> retrying" in line]
    assert len(warnings) == 1


def test_a_key_file_others_can_read_stops_the_start(tmp_path: Path) -> None:
    key = key_file(tmp_path, KEY)
    key.chmod(0o644)
    text = loopback_config("box", {"mdns": {"enabled": False}})
    text += tomli_w.dumps(
        {"restream": [{"stream": STREAM, "url": "rtmp://127.0.0.1:9/live", "key_file": str(key)}]}
    )
    config = write_config(tmp_path / "box.toml", text)
    result = run_edged("run", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 3
    assert f"restream 127-0-0-1-test-pattern key file {key} is readable by others" in result.stderr
    assert KEY not in result.stderr + result.stdout


@pytest.mark.timeout(60)
def test_rtmps_publishes_to_a_trusted_certificate_only(
    start_restreaming: StartRestreaming, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    with (
        PublishCheck(good_key=KEY) as check,
        running_nginx(tmp_path / "nginx", on_publish=check.url) as server,
        TlsFront(tmp_path, server.port) as front,
        named_for(TlsFront(tmp_path / "other", server.port), "127.0.0.2") as other,
    ):
        common = {"stream": STREAM, "url": front.url()}
        daemon = start_restreaming(
            [
                {
                    **common,
                    "name": "trusted",
                    "key_file": str(key_file(tmp_path, KEY)),
                    "ca_file": str(front.cert_file),
                },
                # The system's CAs never issued the front's certificate: no publish, no key sent.
                {**common, "name": "untrusted", "key_file": str(key_file(tmp_path, "k2", "k2"))},
                # A certificate from the CA trusted, for another address (review 18, item 11).
                {
                    "stream": STREAM,
                    "url": other.url(),
                    "name": "other-name",
                    "key_file": str(key_file(tmp_path, "k3", "k3")),
                    "ca_file": str(other.cert_file),
                },
            ]
        )
        until(lambda: state_of(daemon, "trusted", "live"), 20, "publishing over TLS")
        pulled = pull(server.url(KEY), frames=FPS, audio_seconds=0.5)
        assert pulled.video_extradata > 0 and pulled.audio_streams == 1
        refused = until(lambda: state_of(daemon, "untrusted", "retrying"), 20, "not trusted")
        assert refused["reason"].startswith(
            f"the TLS certificate of 127.0.0.1:{front.port} is not trusted ("
        )
        mismatch = until(lambda: state_of(daemon, "other-name", "retrying"), 20, "other name")
        assert mismatch["reason"].startswith(
            f"the TLS certificate of 127.0.0.1:{other.port} is not trusted (IP address mismatch"
        )
        assert KEY in check.names
        assert "k2" not in check.names  # the key never went to a server not trusted
        assert "k3" not in check.names
        assert daemon.stop() == 0
        # edged doctor, without the daemon, checks the certificate the same way.
        assert daemon.config_file is not None and daemon.data_dir is not None
        config = config_module.load(daemon.config_file)
        lines = {check.name: check for check in doctor.run_restream_checks(config, daemon.data_dir)}
        assert lines["restream trusted"].status == doctor.OK
        assert lines["restream untrusted"].status == doctor.WARN
        assert "is not trusted" in lines["restream untrusted"].detail
    assert KEY not in "\n".join(daemon.lines)
