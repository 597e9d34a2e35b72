"""Restream decisions without I/O: URL masking, the tee target, reasons, the queue's drops to the
next keyframe (exact counts), rebased timestamps, the retry backoff, logging, and the config."""

from __future__ import annotations

import errno
import io
import logging
import signal
import socket
import subprocess
import sys
import time
import tomllib
from fractions import Fraction
from pathlib import Path

import av
import psutil
import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from edged import config
from edged.config import Config, ConfigError, RestreamConfig
from edged.errors import StartupError
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.packets import EncodedPacket
from edged.restream import sender as sender_module
from edged.restream.child import (
    LINE_BYTES,
    SenderGone,
    SenderNotStarted,
    SenderProcess,
    exit_description,
    report_lines,
)
from edged.restream.destination import Destination, log_level
from edged.restream.feed import Feed, Item
from edged.restream.policy import (
    AVERROR_EOF,
    AVERROR_PROTOCOL_NOT_FOUND,
    QUIET_SECONDS,
    Admission,
    Failure,
    RestreamState,
    Stage,
    admit,
    certificate_reason,
    continued_origin,
    failure_reason,
    mask_url,
    parse_address,
    public_stream,
    publish_url,
    rebased,
    session_over,
    setup_reason,
    tee_escape,
    tee_target,
    unreachable,
)
from edged.restream.record import RECORD_FILE, StateRecord, read_record
from edged.restream.restreamer import read_keys
from edged.restream.sender import Out, missing_format, publish, report_crashes
from edged.restream.session import INTERLEAVE_MICROSECONDS, FlvSession, Geometry
from edged.restream.wire import (
    LENGTH,
    MAX_FRAME,
    PACKET,
    Report,
    Spec,
    Step,
    frame_fits,
    packet_frame,
    read_packet,
    read_report,
    read_spec,
    spec_frame,
)
from edged.supervise import RestartPolicy, backoff_seconds

# -- masking: the key never shows ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtmp://a.rtmp.youtube.com/live2", "rtmp://a.rtmp.youtube.com/live2/****"),
        ("rtmp://a.rtmp.youtube.com/live2/abcd-efgh", "rtmp://a.rtmp.youtube.com/live2/****"),
        (
            "rtmps://live-api-s.facebook.com:443/rtmp/FB-1?s_bl=1",
            "rtmps://live-api-s.facebook.com:443/rtmp/****",
        ),
        ("rtmp://user:pass@host:1936/app/inst/key", "rtmp://host:1936/app/****"),
        ("rtmp://[::1]:1935/live/key", "rtmp://[::1]:1935/live/****"),
    ],
)
def test_urls_are_masked_after_the_app(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=6))
def test_a_key_appended_never_shows_in_the_masked_url(key: str) -> None:
    assert key not in mask_url(publish_url("rtmp://x.example/app", key))


def test_addresses() -> None:
    assert parse_address("rtmp://127.0.0.1:19350/live").hostport == "127.0.0.1:19350"
    assert parse_address("rtmps://x.example/app/k").port == 443
    assert parse_address("rtmp://x.example/app/k").port == 1935
    assert parse_address("rtmp://[::1]:99/a").hostport == "[::1]:99"
    assert publish_url("rtmp://h/app/", "k") == "rtmp://h/app/k"
    assert publish_url("rtmp://h/app/inst", "") == "rtmp://h/app/inst"


def test_the_tee_target_bounds_every_socket_operation_and_escapes_the_url() -> None:
    target = tee_target("rtmp://h/app/a|b'c\\d", 2.5, 300_000, tls_verify=True, ca_file="/c")
    assert target.startswith("[f=flv:onfail=abort:rw_timeout=2500000:max_interleave_delta=300000]")
    assert target.endswith("rtmp://h/app/a\\|b\\'c\\\\d")
    assert tee_escape("plain:key=1") == "plain:key=1"


def test_an_rtmps_servers_certificate_is_checked_unless_told_not_to() -> None:
    checked = tee_target("rtmps://h/app/k", 1, 1, tls_verify=True, ca_file="/etc/ca.pem")
    assert ":tls_verify=1:ca_file=/etc/ca.pem]rtmps://" in checked
    assert ":tls_verify=1]" in tee_target("rtmps://h/app/k", 1, 1, tls_verify=True, ca_file="")
    assert "tls_verify" not in tee_target("rtmps://h/a/k", 1, 1, tls_verify=False, ca_file="/c")
    assert "tls_verify" not in tee_target("rtmp://h/a/k", 1, 1, tls_verify=True, ca_file="/c")
    reason = certificate_reason(parse_address("rtmps://h:444/app"), "self-signed certificate")
    assert reason.startswith("the TLS certificate of h:444 is not trusted (self-signed")


# -- reasons --------------------------------------------------------------------------------------

ADDRESS = parse_address("rtmp://127.0.0.1:1935/live")


@pytest.mark.parametrize(
    ("stage", "code", "reason"),
    [
        (Stage.RESOLVE, None, "cannot resolve host 127.0.0.1: check the URL"),
        (
            Stage.CONNECT,
            errno.ECONNREFUSED,
            "connection refused by 127.0.0.1:1935: no RTMP server listens there (check the URL)",
        ),
        (Stage.CONNECT, errno.ETIMEDOUT, "no answer from 127.0.0.1:1935 within 3 s"),
        (
            Stage.CONNECT,
            errno.EIO,
            "127.0.0.1:1935 refused to publish: check the application (live) and the stream key",
        ),
        (Stage.SEND, AVERROR_EOF, "connection to 127.0.0.1:1935 lost (closed by the server)"),
        (Stage.SEND, errno.EPIPE, "connection to 127.0.0.1:1935 lost (closed by the server)"),
        (
            Stage.SEND,
            errno.ENETUNREACH,
            "connection to 127.0.0.1:1935 lost: network is unreachable",
        ),
        (Stage.CONNECT, -12345678, "cannot publish to 127.0.0.1:1935: FFmpeg error -12345678"),
    ],
)
def test_failures_have_a_clear_reason(stage: Stage, code: int | None, reason: str) -> None:
    assert failure_reason(stage, code, ADDRESS, 3.0) == reason


def test_only_a_server_that_cannot_be_reached_is_watched_for() -> None:
    assert unreachable(Stage.RESOLVE, None)
    assert unreachable(Stage.CONNECT, errno.ECONNREFUSED)
    # a hung server accepts TCP: its timeout is not watched for, the backoff is waited (#18 r2)
    assert not unreachable(Stage.CONNECT, errno.ETIMEDOUT)
    assert not unreachable(Stage.CONNECT, errno.EIO)  # it refused the publish: back off
    assert not unreachable(Stage.SEND, errno.ECONNREFUSED)


# -- the queue: drops to the next keyframe ---------------------------------------------------------


def test_admission_while_publishing() -> None:
    assert admit(keyframe=False, waiting=False, queued=3, limit=10, live=True) is Admission.TAKE
    assert admit(keyframe=True, waiting=True, queued=0, limit=10, live=True) is Admission.TAKE
    assert admit(keyframe=False, waiting=True, queued=0, limit=10, live=True) is Admission.DROP
    # A slow platform: full, so everything goes and the next keyframe starts again.
    assert admit(keyframe=False, waiting=False, queued=10, limit=10, live=True) is Admission.FLUSH
    assert admit(keyframe=True, waiting=False, queued=10, limit=10, live=True) is Admission.RESTART


def test_admission_while_not_publishing_keeps_the_newest_gop() -> None:
    assert admit(keyframe=True, waiting=False, queued=4, limit=10, live=False) is Admission.RESTART
    assert admit(keyframe=False, waiting=False, queued=4, limit=10, live=False) is Admission.TAKE
    assert admit(keyframe=False, waiting=True, queued=0, limit=10, live=False) is Admission.DROP


def packet(sequence: int, keyframe: bool, *, audio: bool = False) -> EncodedPacket:
    base = Fraction(1, 48000) if audio else Fraction(1, 90000)
    return EncodedPacket(b"x", sequence, sequence, 1, base, keyframe, sequence, 0.0)


def test_a_full_feed_drops_to_the_next_keyframe() -> None:
    drops: list[int] = []
    feed = Feed(drops.append, limit=3)
    feed.live = True
    feed.offer_video(packet(0, False), b"")  # before any keyframe: dropped
    for sequence in range(1, 4):
        feed.offer_video(packet(sequence, sequence == 1), b"")
    feed.offer_video(packet(4, False), b"")  # full: all four go, waiting for a keyframe
    feed.offer_video(packet(5, False), b"")
    feed.offer_audio(packet(0, True, audio=True), b"\x11\x90")  # waiting: sound dropped too
    feed.offer_video(packet(6, True), b"")
    counts = feed.counts
    assert (counts.offered, counts.sent, counts.dropped, counts.queued) == (7, 0, 6, 1)
    assert sum(drops) == 6 and counts.audio_dropped == 1
    item = feed.take(0)
    assert item is not None and item.packet.sequence == 6
    feed.sent()
    assert feed.counts.sent == 1 and feed.counts.queued == 0


def test_a_restarted_stream_starts_a_new_source_at_its_first_keyframe() -> None:
    drops: list[int] = []
    feed = Feed(drops.append)
    feed.live = True
    feed.offer_video(packet(0, True), b"")
    feed.offer_video(packet(1, False), b"")
    feed.new_source()  # the stream restarted: its queued packets go, its clock starts again
    feed.offer_audio(packet(0, True, audio=True), b"")
    feed.offer_video(packet(0, False), b"")
    feed.offer_video(packet(1, True), b"")
    item = feed.take(0)
    assert item is not None and item.packet.keyframe and item.source == 1
    assert sum(drops) == 3 and feed.counts.dropped == 3


def test_a_restarted_streams_clock_goes_on_where_the_session_was() -> None:
    # The session sent 12.5 s; the new pipeline's first keyframe is at 0.2 s on its clock.
    origin = continued_origin(Fraction(1, 5), Fraction(25, 2))
    assert rebased(18_000, Fraction(1, 90_000), origin) == 12.5 * 90_000
    assert rebased(9_600, Fraction(1, 48_000), origin) == 12.5 * 48_000


def test_a_switched_off_feed_takes_and_counts_nothing() -> None:
    feed = Feed(lambda frames: None)
    feed.accepting = False
    feed.offer_video(packet(0, True), b"")
    assert feed.counts.offered == 0 and feed.take(0) is None


@given(
    st.lists(
        st.tuples(st.sampled_from(["key", "frame", "audio", "take", "sent", "lost", "restart"])),
        max_size=200,
    ),
    st.booleans(),
)
def test_every_frame_is_counted_once(steps: list[tuple[str]], live: bool) -> None:
    """offered == sent + dropped + queued, whatever the loop and the thread do."""
    dropped: list[int] = []
    feed = Feed(dropped.append, limit=5, audio_limit=4)
    feed.live = live
    taken: list[bool] = []  # video items taken and not yet settled
    for index, (step,) in enumerate(steps):
        if step in ("key", "frame"):
            feed.offer_video(packet(index, step == "key"), b"")
        elif step == "audio":
            feed.offer_audio(packet(index, True, audio=True), b"")
        elif step == "take" and (item := feed.take(0)) is not None and not item.audio:
            taken.append(True)
        elif step in ("sent", "lost") and taken:
            taken.pop()
            feed.sent() if step == "sent" else feed.lost()
        elif step == "restart":
            feed.restart()
        counts = feed.counts
        assert counts.offered == counts.sent + counts.dropped + counts.queued
        assert sum(dropped) == counts.dropped


# -- timestamps, backoff, logging ------------------------------------------------------------------


def test_timestamps_start_at_the_sessions_first_keyframe() -> None:
    origin = Fraction(90_000 * 10, 90_000)  # 10 s
    assert rebased(90_000 * 10, Fraction(1, 90_000), origin) == 0
    assert rebased(90_000 * 11, Fraction(1, 90_000), origin) == 90_000
    assert rebased(48_000 * 10 + 480, Fraction(1, 48_000), origin) == 480
    assert rebased(48_000 * 9, Fraction(1, 48_000), origin) is None  # sound from before


def test_retries_back_off_from_1_s_doubling_to_30_s_and_start_over_after_a_long_session() -> None:
    policy = RestartPolicy(minimum=1.0, maximum=30.0, stable=60.0)
    waits = []
    now = 1000.0
    for _ in range(7):
        policy.started(now)
        now += 0.1  # refused at once
        waits.append(policy.failed(now, "refused"))
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    policy.started(now)
    assert policy.failed(now + 600, "lost") == 1.0  # published ten minutes first


def test_the_backoff_holds_30_s_for_ever_without_overflow() -> None:
    # review 18 finding 3: the 1,025th failure in a row raised OverflowError
    policy = RestartPolicy(minimum=1.0, maximum=30.0, stable=60.0)
    now = 1000.0
    for _ in range(5000):
        policy.started(now)
        now += 0.1
        wait = policy.failed(now, "refused")
    assert wait == 30.0
    assert policy.streak == 5000


@given(
    st.floats(min_value=0.001, max_value=100.0),
    st.floats(min_value=0.001, max_value=3600.0),
    st.integers(min_value=0, max_value=10_000_000),
)
def test_backoff_seconds_stays_between_its_bounds(
    minimum: float, maximum: float, streak: int
) -> None:
    wait = backoff_seconds(minimum, maximum, streak)
    assert wait <= maximum
    assert wait >= min(minimum, maximum)


def test_a_failure_is_a_warning_once_per_reason() -> None:
    live, retrying = RestreamState.LIVE, RestreamState.RETRYING
    connecting = RestreamState.CONNECTING
    assert log_level(connecting, retrying, new_failure=True) == logging.WARNING
    assert log_level(connecting, retrying, new_failure=False) == logging.DEBUG
    assert log_level(live, retrying, new_failure=False) == logging.WARNING  # a session lost
    assert log_level(retrying, connecting, new_failure=False) == logging.DEBUG
    assert log_level(connecting, live, new_failure=False) == logging.INFO
    assert log_level(live, live, new_failure=False) is None


# -- config ---------------------------------------------------------------------------------------

DOCUMENT = """
[[restream]]
stream = "test-pattern"
url = "rtmp://a.rtmp.youtube.com/live2"
key_file = "/etc/edged/youtube.key"

[[restream]]
stream = "test-pattern"
url = "rtmp://a.rtmp.youtube.com/live2"
enabled = false

[[restream]]
name = "twitch"
stream = "cam-1"
url = "rtmps://live.twitch.tv:443/app"
retry_min_seconds = 0.5
"""


def test_restream_tables_are_read_and_named() -> None:
    loaded = config.from_mapping(tomllib.loads(DOCUMENT))
    assert [entry.name for entry in loaded.restream] == [
        "youtube-test-pattern",
        "youtube-test-pattern-2",
        "twitch",
    ]
    assert loaded.restream[1].enabled is False
    assert loaded.restream[2].retry_min_seconds == 0.5
    assert Config().restream == ()
    assert "restream" not in config.to_mapping(Config())  # as a file without any


def test_restream_survives_show_and_load_and_changes_as_one_key() -> None:
    loaded = config.from_mapping(tomllib.loads(DOCUMENT))
    shown = tomli_w.dumps(config.to_mapping(loaded))
    assert config.from_mapping(tomllib.loads(shown)) == loaded
    assert config.changed_keys(Config(), loaded) == ["restream"]


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ([{"url": "rtmp://h/app"}], "restream[0]: no stream; [[restream]] needs stream and url"),
        ([{"stream": "s"}], "restream[0]: no url"),
        (
            [{"stream": "s", "url": "http://h/app"}],
            "restream[0].url = 'http://h/app/****': not an RTMP URL",
        ),
        ([{"stream": "s", "url": "rtmp://h"}], "restream[0].url = 'rtmp://h//****': not an RTMP"),
        ([{"stream": "s", "url": "rtmp://h/a", "color": 1}], "restream[0].color: unknown key"),
        (
            [{"stream": "s", "url": "rtmp://h/a", "retry_min_seconds": 5, "retry_max_seconds": 2}],
            "restream[0].retry_min_seconds = 5: must be at most retry_max_seconds (2)",
        ),
        (
            [{"name": "x", "stream": "s", "url": "rtmp://h/a"}] * 2,
            "restream[1]: name 'x' is taken by another destination",
        ),
        ({"stream": "s"}, "must be a list of tables"),
    ],
)
def test_bad_restream_tables_are_refused_naming_the_key(tables: object, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as refused:
        config.from_mapping({"restream": tables})
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
        "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl/",
        "rtmp://a.rtmp.youtube.com/live2/abcd efgh",  # fails the pattern as well
        "rtmp://a.rtmp.youtube.com/live2?abcd-efgh-ijkl",
    ],
)
def test_a_key_in_the_url_is_refused_and_never_shown(url: str) -> None:
    # review 18 finding 6: accepted, then printed whole by config show and by config errors
    with pytest.raises(ConfigError) as refused:
        config.from_mapping({"restream": [{"stream": "s", "url": url}]})
    message = str(refused.value)
    assert "abcd" not in message
    assert message.startswith("restream[0].url = 'rtmp://a.rtmp.youtube.com/live2/****': ")
    if "/live2/" in url and " " not in url:
        assert "key_file" in message
        assert "'rtmp://a.rtmp.youtube.com/live2'" in message


def test_more_than_the_app_is_a_path_of_its_own_beside_a_key_file() -> None:
    entry = {"stream": "s", "url": "rtmp://h/app/_definst_", "key_file": "/etc/edged/h.key"}
    assert config.from_mapping({"restream": [entry]}).restream[0].url == "rtmp://h/app/_definst_"
    assert config.from_mapping({"restream": [{"stream": "s", "url": "rtmp://h/app/"}]})


def test_a_restream_config_is_frozen() -> None:
    entry = RestreamConfig(stream="s", url="rtmp://h/a")
    with pytest.raises(AttributeError):
        entry.enabled = False  # type: ignore[misc]


# -- the sender process and what goes down its pipe (review 18, findings 1, 5, 8, 9, 12) ------


def pictures(count: int) -> tuple[list[EncodedPacket], bytes]:
    """`count` frames of a test picture by libx264 at 30 fps, GOP 1 s, and its SPS/PPS."""
    encoder = Encoder("libx264", EncoderSettings(160, 120, 30, 200_000, gop_seconds=1.0))
    packets: list[EncodedPacket] = []
    with av.open("testsrc2=size=160x120:rate=30", format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            if index == count:
                break
            packets += encoder.encode(frame, index * 3000, 1_700_000_000.0 + index / 30)
    return packets + encoder.flush(), encoder.extradata


def file_target(path: Path) -> str:
    return tee_target(str(path), 3.0, INTERLEAVE_MICROSECONDS, tls_verify=False, ca_file="")


def flv_video(path: Path) -> list[tuple[int | None, bool]]:
    with av.open(str(path)) as container:
        return [
            (packet.dts, packet.is_keyframe) for packet in container.demux(video=0) if packet.size
        ]


def test_packets_and_the_spec_cross_the_pipe_unchanged() -> None:
    audio = EncodedPacket(b"\x01\x02", 1024, 1024, 1024, Fraction(1, 48000), True, 0, 0.0)
    video = EncodedPacket(b"\x00\x00\x01\x65", 9000, 6000, 3000, Fraction(1, 90000), True, 0, 0.0)
    for item in (Item(video, b"\x67\x68", source=3), Item(audio, b"\x12\x10", audio=True)):
        frame = packet_frame(item)
        back = read_packet(frame[4:])
        assert (back.audio, back.source, back.extradata) == (
            item.audio,
            item.source,
            item.extradata,
        )
        original = item.packet
        assert (back.packet.data, back.packet.pts, back.packet.dts) == (
            original.data,
            original.pts,
            original.dts,
        )
        assert (back.packet.duration, back.packet.time_base, back.packet.keyframe) == (
            original.duration,
            original.time_base,
            original.keyframe,
        )
    spec = Spec("[f=flv]rtmp://h/app/key", 320, 240, 15, b"\x12\x10")
    assert read_spec(spec_frame(spec)[4:]) == spec
    assert read_report(b"not json\n") is None
    assert read_report(b'{"step": "failed", "stage": "connect", "code": 110}') == Report(
        "failed", stage="connect", code=110
    )
    # review 18b finding 2: garbled lines raised (OverflowError, RecursionError), or passed
    # a negative size (a counter's ValueError) or "no" as sound
    for garbled in (
        b'{"step":"bytes","size":Infinity}',
        b"[" * 100_000,
        b'{"step":"bytes","size":-5}',
        b'{"step":"bytes","size":1.5}',
        b'{"step":"live","audio":"no"}',
        b'{"step":["live"]}',
        b"[1]",
    ):
        assert read_report(garbled) is None, garbled
    assert read_report(b'{"step":"bytes","size":7}') == Report("bytes", size=7)


def test_a_report_line_over_the_bound_is_dropped_whole() -> None:
    # review 18b finding 2: a line without an end grew without bound in the daemon
    long = b'{"step":"bytes","size":1' + b"0" * (LINE_BYTES * 3) + b"}\n"
    stdout = io.BytesIO(b'{"step":"live"}\n' + long + b'{"step":"bytes","size":3}\n' + b"x" * 9)
    assert list(report_lines(stdout)) == [
        b'{"step":"live"}\n',
        b'{"step":"bytes","size":3}\n',
        b"x" * 9,
    ]


def test_a_session_starts_at_0_on_its_first_picture_written(tmp_path: Path) -> None:
    # review 18 finding 9: the clock started at the keyframe peeked before connecting, and the
    # first written was a later one (here: the second GOP's, 1 s in)
    packets, extradata = pictures(45)
    later = [packet for packet in packets if packet.dts >= 90_000]
    assert later[0].keyframe
    session = FlvSession(file_target(tmp_path / "out.flv"), Geometry(160, 120, 30), b"")
    session.open()
    try:
        for packet in later:
            session.write(Item(packet, extradata))
    finally:
        session.close()
    video = flv_video(tmp_path / "out.flv")
    assert video[0] == (0, True)
    assert len(video) == len(later)


def test_the_sender_process_publishes_what_comes_down_its_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGED_OTHER_SECRET", "s3")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca.pem")
    # review 18 finding 1: the session runs in its own process; the key never in its argv
    packets, extradata = pictures(30)
    target = file_target(tmp_path / "secret-key-in-target.flv")
    counted: list[int] = []
    sender = SenderProcess("unit", counted.append)
    sender.start(Spec(target, 160, 120, 30, b""))
    try:
        live = None
        deadline = time.monotonic() + 30
        while live is None and time.monotonic() < deadline:
            live = sender.next_report(0.5)
        assert live is not None
        assert live.step == Step.LIVE
        assert not live.audio
        process = sender._process
        assert process is not None
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert b"secret-key" not in cmdline
        assert b"secret-key" not in environ
        # review 18b finding 4: the daemon's other secrets stay in the daemon
        assert b"EDGED_OTHER_SECRET" not in environ
        assert b"SSL_CERT_FILE=/etc/ssl/certs/ca.pem" in environ
        for packet in packets:
            sender.send(Item(packet, extradata))
    finally:
        sender.finish()
        sender.reap(30)
    assert process.returncode == 0
    assert len(flv_video(tmp_path / "secret-key-in-target.flv")) == len(packets)
    assert sum(counted) > 0  # bytes reported


def test_a_sender_without_tee_says_so() -> None:
    # review 18 finding 5: a build without the tee muxer left the thread dead, "connecting"
    assert missing_format(frozenset({"flv", "tee", "mp4"})) == ""
    assert missing_format(frozenset({"flv"})) == "tee"
    assert missing_format(frozenset({"tee"})) == "flv"
    assert setup_reason("tee") == (
        "cannot restream: this FFmpeg build lacks the tee muxer (install PyAV's own wheels)"
    )
    # review 18b nit: "has no the tee muxer", "has no a muxer"
    assert setup_reason("muxer") == (
        "cannot restream: this FFmpeg build lacks a muxer restreaming needs "
        "(install PyAV's own wheels)"
    )
    assert "cannot speak rtmps" in failure_reason(
        Stage.CONNECT, AVERROR_PROTOCOL_NOT_FOUND, parse_address("rtmps://h/app"), 3.0
    )


def test_ffmpeg_logs_stay_off_so_the_key_never_reaches_the_journal() -> None:
    # review 18 finding 12: FFmpeg's tee logs its slave's URL, key included, when logs are on
    import edged.restream.sender
    import edged.restream.session  # noqa: F401

    assert av.logging.get_level() is None


def test_a_session_ends_when_its_stream_stops_or_goes_quiet() -> None:
    # review 18 finding 8: "live" (and up=1, no alert) while nothing was sent
    assert session_over("cam", running=True, quiet_seconds=0.0) is None
    assert session_over("cam", running=True, quiet_seconds=QUIET_SECONDS - 0.1) is None
    assert session_over("cam", running=False, quiet_seconds=0.0) == "stream cam is not running"
    assert session_over("cam", running=True, quiet_seconds=QUIET_SECONDS) == (
        "stream cam gave nothing for 5 s"
    )


def test_a_stream_without_the_token_shows_only_counts_of_its_destinations() -> None:
    # review 18 finding 7: platforms, apps and last errors were readable by anyone
    rows = [
        {"name": "yt", "state": "live", "url": "rtmp://a.rtmp.youtube.com/live2/****"},
        {"name": "tw", "state": "retrying", "reason": "refused to publish"},
    ]
    entry = {"stream": "cam", "state": "running", "restream": rows}
    assert public_stream(entry) == {
        "stream": "cam",
        "state": "running",
        "restream": {"live": 1, "not_live": 1},
    }
    assert public_stream({"stream": "cam"}) == {"stream": "cam"}


def test_an_empty_key_file_stops_the_start(tmp_path: Path) -> None:
    # review 18 finding 13: an empty key published to the bare app without a word
    key = tmp_path / "empty.key"
    key.write_text("\n")
    key.chmod(0o600)
    entry = RestreamConfig(stream="s", url="rtmp://h/app", name="h-s", key_file=str(key))
    with pytest.raises(StartupError, match=f"restream h-s key file {key} is empty"):
        read_keys([entry])
    key.write_text("k-1\n")
    assert read_keys([entry, RestreamConfig(stream="s", url="rtmp://h/app")]) == ["k-1", ""]


def test_the_record_is_not_written_again_once_forgotten(tmp_path: Path) -> None:
    # review 18 finding 10: a thread ending late rewrote restream.json after the stop deleted it
    record = StateRecord(tmp_path, lambda: [{"name": "yt", "state": "live"}])
    record.save()
    assert read_record(tmp_path) is not None
    record.forget()
    record.save()
    assert not (tmp_path / RECORD_FILE).exists()


PARENT = """
import sys
from edged.restream.child import (
    LINE_BYTES,
    SenderGone,
    SenderNotStarted,
    SenderProcess,
    exit_description,
    report_lines,
)
from edged.restream.wire import Spec
sender = SenderProcess("orphan", lambda size: None)
sender.start(Spec(sys.argv[1], 160, 120, 30, b""))
print(sender._process.pid, flush=True)
sys.stdin.readline()  # the test says when the sender is connecting to its server
import os
os._exit(0)
"""


def test_a_sender_dies_with_the_daemon_even_while_connecting(tmp_path: Path) -> None:
    # review 18 finding 1: no orphan left connecting (PR_SET_PDEATHSIG: stdin is not read then)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel takes the TCP connection; nobody answers
        url = f"rtmp://127.0.0.1:{hung.getsockname()[1]}/live/orphan-key"
        target = tee_target(url, 60.0, INTERLEAVE_MICROSECONDS, tls_verify=False, ca_file="")
        with subprocess.Popen(
            [sys.executable, "-c", PARENT, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as parent:
            assert parent.stdin is not None and parent.stdout is not None
            pid = int(parent.stdout.readline())
            hung.settimeout(20)
            connection, _ = hung.accept()  # the sender is connecting; the server never answers
            parent.stdin.write("\n")
            parent.stdin.close()  # the daemon dies now, its sender mid-connect
            assert parent.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        connection.close()
        assert not alive(pid)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ScriptedSender:
    """A sender that ended under a write, its reader thread not yet done with its last line."""

    def __init__(self, *reports: Report | None) -> None:
        self.reports = list(reports)

    def reap(self, timeout: float) -> None:
        pass

    def next_report(self, timeout: float) -> Report | None:
        if not self.reports:
            raise SenderGone
        return self.reports.pop(0)


def test_the_reason_a_sender_gave_is_kept_though_its_reader_is_late() -> None:
    # review 18b finding 3a: the FAILED line not queued yet gave "unknown error"
    failed = Report("failed", stage="send", code=errno.ECONNRESET)
    late = ScriptedSender(None, None, failed)
    assert Destination._last_failure_of(late) == Failure(Stage.SEND, errno.ECONNRESET)  # type: ignore[arg-type]
    silent = ScriptedSender(None)
    assert Destination._last_failure_of(silent).problem == "gone"  # type: ignore[arg-type]


def test_how_a_sender_ended_is_said() -> None:
    # review 18b finding 3b: a sender dead without a report (a crash, the OOM killer) left
    # only "unknown error"; its exit status is logged, and a crash is named by its type only
    assert exit_description(1) == "exit status 1"
    assert exit_description(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_description(None) == "still running"
    assert setup_reason("crash: KeyError") == (
        "the sender process crashed (KeyError; a bug in edged: please report it)"
    )
    assert "secret" not in setup_reason("crash: KeyError('secret')")


def test_a_sender_that_cannot_be_started_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # review 18b finding 3c: Popen's OSError read "cannot publish to host: ..."
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    sender = SenderProcess("unit", lambda size: None)
    with pytest.raises(SenderNotStarted) as raised:
        sender.start(Spec("[f=flv]/dev/null", 160, 120, 30, b""))
    assert raised.value.code == errno.ENOENT
    assert setup_reason("start", errno.EMFILE) == (
        "could not start the sender process: too many open files"
    )


def test_the_sender_never_imports_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review 18b finding 4: python -m put the cwd first on the child's sys.path: a ctypes.py
    # there ran in the process that is given the key
    marker = tmp_path / "imported"
    (tmp_path / "ctypes.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    sender = SenderProcess("unit", lambda size: None)
    sender.start(Spec(file_target(tmp_path / "out.flv"), 160, 120, 30, b""))
    try:
        deadline = time.monotonic() + 30
        live = None
        while live is None and time.monotonic() < deadline:
            live = sender.next_report(0.5)
    finally:
        sender.finish()
        sender.reap(30)
    assert live is not None and live.step == Step.LIVE
    assert not marker.exists()


def published(stdin: bytes) -> tuple[int, list[Report | None]]:
    """A sender's session in this process: its exit status and its reports."""
    out = io.BytesIO()
    status = publish(io.BytesIO(stdin), Out(out))
    return status, [read_report(line) for line in out.getvalue().splitlines()]


def test_a_garbled_frame_fails_the_sender_saying_so(tmp_path: Path) -> None:
    # review 18b finding 5: an over-long or short frame ended the session as if stdin closed
    # (exit 0, not a word); a garbled body was a traceback into DEVNULL
    packets, extradata = pictures(3)
    spec = spec_frame(Spec(file_target(tmp_path / "out.flv"), 160, 120, 30, b""))
    good = packet_frame(Item(packets[0], extradata))
    zero = bytearray(good)
    zero[4 + PACKET.size - 8 : 4 + PACKET.size - 4] = b"\0\0\0\0"  # denominator 0
    wire = Report("failed", stage="setup", problem="wire")
    for stdin in (
        spec + good + LENGTH.pack(MAX_FRAME + 1),  # over MAX_FRAME
        spec + good + good[:-3],  # cut short
        spec + good + LENGTH.pack(3) + b"abc",  # shorter than a packet's head
        spec + bytes(zero),
    ):
        status, reports = published(stdin)
        assert status == 1
        assert reports[-1] == wire
        assert reports[0] == Report("live")
    for spec_body in (b"not json", b'{"width": 1}'):
        assert published(LENGTH.pack(len(spec_body)) + spec_body) == (1, [wire])
    assert published(b"") == (0, [])
    assert published(spec + good)[0] == 0


def test_a_packet_too_long_to_frame_is_not_sent() -> None:
    # review 18b finding 5: the daemon framed it anyway and the sender ended the session
    small = EncodedPacket(b"\0" * 16, 0, 0, 1, Fraction(1, 90000), True, 0, 0.0)
    huge = EncodedPacket(b"\0" * (MAX_FRAME + 1), 0, 0, 1, Fraction(1, 90000), True, 0, 0.0)
    assert frame_fits(Item(small, b""))
    assert not frame_fits(Item(huge, b""))


def test_a_sender_without_tee_fails_at_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review 18 finding 5 (18b nit): nothing ran publish() down the setup path
    monkeypatch.setattr(sender_module, "missing_format", lambda available: "tee")
    spec = spec_frame(Spec(file_target(tmp_path / "out.flv"), 160, 120, 30, b""))
    assert published(spec) == (1, [Report("failed", stage="setup", problem="tee")])


def test_a_muxing_error_mid_session_is_a_send_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review 18b nit: a ValueError while sending read "this FFmpeg build has no a muxer"
    def refuse(self: FlvSession, item: Item) -> int:
        raise ValueError("refused")

    monkeypatch.setattr(FlvSession, "write", refuse)
    packets, extradata = pictures(1)
    spec = spec_frame(Spec(file_target(tmp_path / "out.flv"), 160, 120, 30, b""))
    status, reports = published(spec + packet_frame(Item(packets[0], extradata)))
    assert status == 1
    assert reports == [Report("live"), Report("failed", stage="send")]


def test_a_crash_is_reported_by_its_type_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # review 18b finding 3b: a crash gave "unknown error" only
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    out = io.BytesIO()
    report_crashes(Out(out))
    error = KeyError("rtmp://h/app/secret-key")
    sys.excepthook(KeyError, error, None)
    assert b"secret-key" not in out.getvalue()
    assert read_report(out.getvalue()) == Report("failed", stage="setup", problem="crash: KeyError")


def test_the_key_is_not_in_a_specs_repr() -> None:
    # review 18b nit: the dataclass repr carried the target, key included
    spec = Spec("[f=flv]rtmp://h/app/secret-key", 320, 240, 15, b"")
    assert "secret-key" not in repr(spec)
