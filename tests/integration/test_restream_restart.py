"""A stream restarted under a restream session (a thermal step to half the resolution: a new
pipeline, its clock from 0) goes on in the same session: a player on nginx decodes the pictures
of both pipelines, their timestamps continuous; nothing on the event loop blocks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from prometheus_client import CollectorRegistry

from edged.config import AudioConfig, MediaConfig, RestreamConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.media.recorder import SegmentIdentity
from edged.media.stream_plan import PATTERN_STREAM
from edged.media.stream_supervisor import StreamSupervisor
from edged.metrics import RestreamMetrics, StreamMetrics
from edged.restream import child as child_module
from edged.restream import destination as destination_module
from edged.restream.destination import Destination
from edged.restream.policy import RestreamState
from edged.restream.restreamer import Restreamer, Running
from edged.restream.session import Geometry
from edged.supervise import Supervisor
from tests.rtmp_server import Nginx, rtmp_module
from tests.support import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(rtmp_module() is None, reason="libnginx-mod-rtmp is not installed"),
]

KEY = "restart-key"


@dataclass
class Rig:
    streams: StreamSupervisor
    restreamer: Restreamer
    server: Nginx
    registry: CollectorRegistry
    hidden: set[str]  # streams the restreamer is told are not running


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server = Nginx(tmp_path / "nginx")
    await asyncio.to_thread(server.start)
    media = MediaConfig(
        test_pattern="on",
        pattern_size="320x240",
        pattern_fps=15,
        gop_seconds=0.5,
        audio_stand_in="sine=frequency=440:sample_rate=48000",
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
        audio=AudioConfig(),
    )
    destination = RestreamConfig(
        stream=PATTERN_STREAM,
        url=server.url(),
        name="local",
        retry_min_seconds=0.2,
        retry_max_seconds=1.0,
        timeout_seconds=3.0,
    )

    hidden: set[str] = set()

    def running() -> dict[str, Running]:
        return {
            name: Running(entry.pipeline, Geometry(320, 240, 15))
            for name, entry in streams.streams.items()
            if not entry.waiting and name not in hidden
        }

    restreamer = Restreamer(
        [destination], [KEY], RestreamMetrics(registry), stream_metrics, running
    )
    supervisor = Supervisor(None)
    await streams.start(None, boot=1)
    await restreamer.start(supervisor)
    try:
        yield Rig(streams, restreamer, server, registry, hidden)
    finally:
        await restreamer.stop()
        await supervisor.stop()
        await streams.stop()
        await asyncio.to_thread(server.stop)


@dataclass
class Seen:
    sizes: list[tuple[int, int]]
    times: list[float]


def watch(url: str, small: int, stop: threading.Event, limit: float = 60.0) -> Seen:
    """Decode until `small` pictures at half the size came (blocking: a thread)."""
    seen = Seen([], [])
    deadline = time.monotonic() + limit
    container: Any
    with av.open(url, timeout=limit, options={"rtmp_live": "live"}) as container:
        for frame in container.decode(video=0):
            seen.sizes.append((frame.width, frame.height))
            seen.times.append(float(frame.time or 0.0))
            if seen.sizes.count((160, 120)) >= small or stop.is_set():
                return seen
            if time.monotonic() > deadline:
                break
    return seen


def live(rig: Rig) -> bool:
    return rig.restreamer.destinations["local"].snapshot().state is RestreamState.LIVE


@pytest.mark.timeout(90)
async def test_a_restarted_stream_goes_on_in_the_same_session(rig: Rig) -> None:
    await eventually(lambda: live(rig), 30, "publishing")
    stop = threading.Event()
    player = asyncio.ensure_future(asyncio.to_thread(watch, rig.server.url(KEY), 15, stop))
    try:
        destination = rig.restreamer.destinations["local"]
        sent = destination.feed.counts.sent
        await eventually(lambda: destination.feed.counts.sent >= sent + 30, 30, "two seconds out")
        first = rig.streams.streams[PATTERN_STREAM].pipeline
        await rig.streams.set_thermal_level(2)  # half the resolution: a new pipeline
        assert rig.streams.streams[PATTERN_STREAM].pipeline is not first
        seen = await asyncio.wait_for(player, 60)
    finally:
        stop.set()
        await asyncio.gather(player, return_exceptions=True)
    assert destination.reconnects == 0 and live(rig)  # one session throughout
    assert (320, 240) in seen.sizes and seen.sizes.count((160, 120)) >= 15
    switch = seen.sizes.index((160, 120))
    assert set(seen.sizes[:switch]) == {(320, 240)}
    assert all(b > a for a, b in zip(seen.times, seen.times[1:], strict=False))
    # The new pipeline's first picture follows the old one's last: one frame (1/15 s) later.
    assert seen.times[switch] - seen.times[switch - 1] < 0.2


def up(rig: Rig) -> float | None:
    return rig.registry.get_sample_value(
        "edged_restream_up", {"stream": PATTERN_STREAM, "destination": "local"}
    )


@pytest.mark.timeout(60)
async def test_a_stream_that_stops_ends_the_session_so_the_alert_can_fire(rig: Rig) -> None:
    # review 18 finding 8: the state stayed "live" and up 1 with nothing sent
    destination = rig.restreamer.destinations["local"]
    await eventually(lambda: live(rig), 30, "publishing")
    assert up(rig) == 1
    rig.hidden.add(PATTERN_STREAM)  # the stream stops (unplugged, failed)
    await eventually(lambda: destination.snapshot().state is RestreamState.WAITING, 10, "waiting")
    assert destination.snapshot().reason == f"stream {PATTERN_STREAM} is not running"
    assert up(rig) == 0
    assert destination.reconnects == 0  # not a failure: no backoff
    rig.hidden.clear()
    await eventually(lambda: live(rig), 30, "publishing again")


@pytest.fixture
def small_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender's pipe of one page, so that a sender that stops reading fills it at once,
    and a feed of 15 frames (the default 150 took 10 s to fill before the first drop)."""
    monkeypatch.setattr(child_module, "PIPE_BYTES", 4096)
    monkeypatch.setattr(destination_module, "QUEUE_FRAMES", 15)


def sender_process(destination: Destination) -> subprocess.Popen[bytes] | None:
    sender = destination._sender
    return sender._process if sender is not None else None


async def stop_the_sender_until_its_pipe_is_full(destination: Destination) -> Any:
    process = sender_process(destination)
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    dropped = destination.feed.counts.dropped
    await eventually(lambda: destination.feed.counts.dropped > dropped, 30, "the pipe full")
    return process


@pytest.mark.timeout(90)
async def test_a_sender_stuck_while_publishing_is_switched_off_or_killed(
    small_pipe: None, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review 18b finding 1: a sender that stopped reading held the thread in os.write for
    # ever: "live" and up 1, a switch-off never taken (only FFmpeg's rw_timeout could end it)
    destination = rig.restreamer.destinations["local"]
    await eventually(lambda: live(rig), 30, "publishing")
    first = await stop_the_sender_until_its_pipe_is_full(destination)
    assert live(rig)
    destination.set_enabled(False)
    await eventually(
        lambda: destination.snapshot().state is RestreamState.DISABLED, 10, "switched off"
    )
    await eventually(lambda: first.poll() is not None, 10, "the stopped sender reaped")
    assert destination.reconnects == 0  # a switch-off, not a failure
    monkeypatch.setattr(destination_module, "CONNECT_GRACE_SECONDS", 0.5)
    destination.set_enabled(True)
    await eventually(lambda: live(rig), 30, "publishing again")
    second = await stop_the_sender_until_its_pipe_is_full(destination)
    await eventually(lambda: destination.reconnects >= 1, 30, "the stuck sender given up")
    await eventually(lambda: second.poll() is not None, 10, "the stuck sender reaped")
    assert second.returncode == -signal.SIGKILL
    assert destination.last_error == f"no answer from 127.0.0.1:{rig.server.port} within 3 s"
