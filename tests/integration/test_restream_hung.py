"""A platform that hangs (takes the TCP connection, never answers the RTMP handshake: an
overloaded or stopped ingest) while the stream runs in this process (review 18, findings 1, 2
and 4): connecting runs in a sender process, so the event loop never stalls (the test's own
lag probe, and the 0.05 s slow-callback guard), capture and encode drop nothing, HLS segments
keep coming; each timed-out attempt waits its whole backoff (no TCP probe cuts it short)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.config import MediaConfig, RestreamConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.media.recorder import SegmentIdentity
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.stream_supervisor import StreamSupervisor
from edged.metrics import RestreamMetrics, StreamMetrics
from edged.restream import destination as destination_module
from edged.restream.policy import RestreamState
from edged.restream.restreamer import Restreamer, Running
from edged.restream.session import Geometry
from edged.supervise import Supervisor
from tests.support import eventually

pytestmark = pytest.mark.integration

KEY = "hung-key-4411"
TIMEOUT = 1.0  # each attempt's timeout_seconds: the old code froze the process this long
BACKOFF = 3.0  # retry_min = retry_max: a fixed wait between attempts


@dataclass
class HungServer:
    """Accepts TCP on loopback and never says a word."""

    server: asyncio.Server | None = None
    port: int = 0
    connections: int = 0
    held: list[asyncio.StreamWriter] = field(default_factory=list)
    on_connection: Callable[[], None] = lambda: None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.held.append(writer)
        self.on_connection()
        while await reader.read(65536):  # reads the handshake, answers nothing
            pass

    async def stop(self) -> None:
        for writer in self.held:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Rig:
    streams: StreamSupervisor
    restreamer: Restreamer
    registry: CollectorRegistry
    hung: HungServer


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    hung = HungServer()
    port = await hung.start()
    media = MediaConfig(
        test_pattern="on",
        pattern_size="320x240",
        pattern_fps=15,
        gop_seconds=0.5,
        segment_seconds=1.0,
    )
    board = Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test")
    registry = CollectorRegistry()
    stream_metrics = StreamMetrics(registry)
    streams = StreamSupervisor(
        media,
        board,
        stream_metrics,
        tmp_path / "spool",
        lambda: SegmentIdentity(node="box", event="gig"),
        lambda segment: None,
    )
    destination = RestreamConfig(
        stream=PATTERN_STREAM,
        url=f"rtmp://127.0.0.1:{port}/live",
        name="hung",
        retry_min_seconds=BACKOFF,
        retry_max_seconds=BACKOFF,
        timeout_seconds=TIMEOUT,
    )

    def running() -> dict[str, Running]:
        return {
            name: Running(entry.pipeline, Geometry(320, 240, 15))
            for name, entry in streams.streams.items()
            if not entry.waiting
        }

    restreamer = Restreamer(
        [destination], [KEY], RestreamMetrics(registry), stream_metrics, running
    )
    supervisor = Supervisor(None)
    await streams.start(None, boot=1)
    await restreamer.start(supervisor)
    try:
        yield Rig(streams, restreamer, registry, hung)
    finally:
        await restreamer.stop()
        await supervisor.stop()
        await streams.stop()
        await hung.stop()


async def lag_probe(worst: list[float]) -> None:
    """The longest the loop took past a 10 ms sleep, into worst[0] (until cancelled)."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst[0] = max(worst[0], time.monotonic() - before - 0.01)


def dropped(rig: Rig, stage: str) -> float:
    value = rig.registry.get_sample_value(
        "edged_frames_dropped_total", {"stream": PATTERN_STREAM, "stage": stage}
    )
    return value or 0.0


def newest_segment(rig: Rig) -> int:
    hub = rig.streams.hub(PATTERN_STREAM)
    segments = hub.hls.segments if hub is not None else ()
    return max((segment.sequence for segment in segments), default=-1)


@pytest.mark.timeout(90)
async def test_a_hung_platform_never_stalls_the_daemon_and_is_retried_at_the_backoff(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    destination = rig.restreamer.destinations["hung"]
    await eventually(lambda: newest_segment(rig) >= 0, 30, "a first HLS segment")
    worst = [0.0]
    probe = asyncio.ensure_future(lag_probe(worst))
    try:
        await eventually(lambda: rig.hung.connections >= 1, 30, "a first attempt")
        first_segment = newest_segment(rig)
        await eventually(lambda: destination.reconnects >= 1, 30, "the first attempt timed out")
        snapshot = destination.snapshot()
        assert snapshot.state is RestreamState.RETRYING
        assert snapshot.reason == f"no answer from 127.0.0.1:{rig.hung.port} within 1 s"
        await eventually(lambda: destination.reconnects >= 2, 30, "the second attempt timed out")
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    # Two connects of a second each: the loop went on (the old code stopped it for each).
    assert worst[0] < 0.5, f"the event loop stalled {worst[0]:.2f} s"
    assert dropped(rig, "capture") == 0
    assert dropped(rig, "encode") == 0
    assert newest_segment(rig) >= first_segment + 2  # 1 s segments over two attempts
    # One connection per attempt: no TCP probe ended the backoff after a timeout.
    assert rig.hung.connections == 2
    # The timed-out attempts' log lines, at every level, never carry the key (review 18, 12).
    assert "hung-key" not in caplog.text
    assert any("no answer from" in record.getMessage() for record in caplog.records)


@pytest.mark.timeout(60)
async def test_a_sender_stuck_connecting_is_killed_at_the_deadline(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg's own timeouts end a hung connect; a sender stuck past them anyway (here: stopped
    by SIGSTOP as its connection arrives) is killed at timeout_seconds + the grace."""
    monkeypatch.setattr(destination_module, "CONNECT_GRACE_SECONDS", 0.5)
    destination = rig.restreamer.destinations["hung"]
    stopped: list[subprocess.Popen[bytes]] = []

    def stop_the_sender() -> None:
        sender = destination._sender
        process = sender._process if sender is not None else None
        if process is not None and not stopped:
            os.kill(process.pid, signal.SIGSTOP)
            stopped.append(process)

    rig.hung.on_connection = stop_the_sender
    await eventually(lambda: destination.reconnects >= 1, 30, "the stuck attempt ended")
    assert stopped
    assert destination.snapshot().reason == f"no answer from 127.0.0.1:{rig.hung.port} within 1 s"
    await eventually(lambda: stopped[0].poll() is not None, 10, "the stuck sender reaped")
    assert stopped[0].returncode == -signal.SIGKILL
