"""A live stream that restarts (a thermal step to half the resolution: a new pipeline and HLS
muxer, its numbering going on) names its init and media segments anew (review 19, finding 7):
the old run's URLs answer 404, and a player through the shipped cache in front
(configs/nginx/edged-edge.conf, which keeps segments a day as `immutable`) gets only the new
run's bytes after the restart. The app in process on a real MediaManager, nginx on loopback."""

from __future__ import annotations

import asyncio
import io
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestServer

from edged.config import MediaConfig, StorageConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.media.recorder import SegmentIdentity
from edged.media.streams import PATTERN_STREAM, MediaManager
from edged.media.thermal import MAX_LEVEL, ThermalReading
from edged.web.app import create_app
from tests.edge_cache import EdgeCache
from tests.integration.test_live_poster import NothingUploaded, no_upload
from tests.support import eventually_in_thread
from tests.web_context import live_view, web_context

pytestmark = pytest.mark.integration

COOL = ThermalReading({}, None)
HOT = ThermalReading({"cpu": 200.0}, None)  # past any hard limit: half the resolution at once
PATH = f"/live/{PATTERN_STREAM}/"


class Sensors:
    """The thermal reading the governor takes: the seam, a box cannot be made hot here."""

    def __init__(self) -> None:
        self.reading = COOL

    def __call__(self) -> ThermalReading:
        return self.reading


@dataclass
class Rig:
    media: MediaManager
    sensors: Sensors
    box: str  # base URLs
    edge: str


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    context = web_context(tmp_path)
    sensors = Sensors()
    media = MediaManager(
        MediaConfig(test_pattern="on", pattern_size="320x240", pattern_fps=15, gop_seconds=0.5),
        StorageConfig(min_free_bytes=0),
        Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test"),
        context.metrics.streams,
        tmp_path,
        SegmentIdentity,
        no_upload,
        NothingUploaded(),
        thermal_sensors=sensors,
    )
    context.live = live_view(media, context.metrics)
    await media.start(None)
    server = TestServer(create_app(context), host="127.0.0.1")
    await server.start_server()
    edge = EdgeCache(tmp_path / "nginx", f"127.0.0.1:{server.port}")
    try:
        await asyncio.to_thread(edge.start)
        yield Rig(media, sensors, str(server.make_url("")).rstrip("/"), edge.url)
    finally:
        await asyncio.to_thread(edge.stop)
        await server.close()
        await media.stop()


def get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET (blocking: a thread)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass(frozen=True)
class Listed:
    init: str
    segments: tuple[str, ...]

    @property
    def run(self) -> str:
        return self.init.removeprefix("init-").removesuffix(".mp4")


def listed(base: str) -> Listed | None:
    """What the playlist at `base` lists (None: no playlist yet)."""
    status, body = get(base + PATH + "index.m3u8")
    if status != 200:
        return None
    text = body.decode()
    (init,) = re.findall(r'^#EXT-X-MAP:URI="([^"]+)"$', text, re.M)
    return Listed(init, tuple(re.findall(r"^(segment-\S+\.m4s)$", text, re.M)))


def picture_sizes(init: bytes, segment: bytes) -> set[tuple[int, int]]:
    container: Any
    with av.open(io.BytesIO(init + segment)) as container:
        return {(frame.width, frame.height) for frame in container.decode(video=0)}


def play(base: str, playlist: Listed) -> dict[str, bytes]:
    """A player: the init and every segment the playlist lists, as it gets them (name -> bytes;
    blocking)."""
    got = {}
    for name in (playlist.init, *playlist.segments):
        status, body = get(base + PATH + name)
        if status == 200:  # a segment gone from the window since: a player skips it
            got[name] = body
    return got


async def test_a_restarted_stream_has_new_urls_and_the_cache_never_mixes_runs(rig: Rig) -> None:
    first: list[Listed] = []

    def two_segments() -> bool:
        playlist = listed(rig.edge)
        first[:] = [playlist] if playlist is not None and len(playlist.segments) >= 2 else []
        return bool(first)

    await eventually_in_thread(two_segments, 30, "two segments through the cache")
    before = first[0]
    assert re.fullmatch(r"init-[0-9a-f]{8}\.mp4", before.init)
    assert all(name.startswith(f"segment-{before.run}-") for name in before.segments)
    old = await asyncio.to_thread(play, rig.edge, before)  # now held by the cache too
    assert before.init in old and len(old) >= 2
    for name in before.segments:
        if name in old:
            sizes = await asyncio.to_thread(picture_sizes, old[before.init], old[name])
            assert sizes == {(320, 240)}

    rig.sensors.reading = HOT
    assert await rig.media.thermal.check() == MAX_LEVEL  # a new pipeline at 160x120
    later: list[Listed] = []

    def new_run_listed() -> bool:
        playlist = listed(rig.edge)  # a player reloading the playlist through the cache
        later[:] = [playlist] if playlist is not None and playlist.run != before.run else []
        return bool(later)

    await eventually_in_thread(new_run_listed, 30, "the new run's playlist through the cache")
    after = later[0]
    assert after.init != before.init
    assert not set(after.segments) & set(before.segments)
    assert all(name.startswith(f"segment-{after.run}-") for name in after.segments)

    # The old run's URLs are gone at the box for good (the cache may still hold its copies,
    # which are the old run's own bytes under the old run's names); the old form too.
    for name in (before.init, before.segments[-1], "init.mp4", "segment-0.m4s"):
        status, _ = await asyncio.to_thread(get, rig.box + PATH + name)
        assert status == 404, name

    # The player after the restart: the new init and each listed segment, through the cache,
    # decode together at the new size: none is the old run's.
    new = await asyncio.to_thread(play, rig.edge, after)
    assert after.init in new and new[after.init] != old[before.init]
    segments = [name for name in after.segments if name in new]
    assert segments
    for name in segments:
        assert new[name] not in old.values()
        sizes = await asyncio.to_thread(picture_sizes, new[after.init], new[name])
        assert sizes == {(160, 120)}, name
