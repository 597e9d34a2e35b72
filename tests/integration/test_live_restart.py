"""A live stream that restarts (a thermal step to half the resolution: a new pipeline and HLS
muxer, its numbering going on) names its init and media segments anew (review 19, finding 7),
and removes none of the old run's at once (review s7a H1, RFC 8216 6.2.2): the new run's
playlist lists the old run's segments under the old init until they slide out, and those URLs
answer 200 with the old bytes while listed, 404 once gone. A player through the shipped cache in
front (configs/nginx/edged-edge.conf, which keeps segments a day as `immutable`) gets each run's
own bytes under each name. The app in process on a real MediaManager, nginx on loopback."""

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
    """One playlist: its segments, each with the init its #EXT-X-MAP names."""

    segments: tuple[tuple[str, str], ...]  # (init, segment)

    @property
    def init(self) -> str:
        """The newest run's init (the last #EXT-X-MAP)."""
        return self.segments[-1][0]

    @property
    def run(self) -> str:
        return run_of(self.init)

    def of(self, run: str) -> tuple[str, ...]:
        """The names of `run`'s segments listed."""
        return tuple(name for init, name in self.segments if run_of(init) == run)


def run_of(init: str) -> str:
    return init.removeprefix("init-").removesuffix(".mp4")


def listed(base: str) -> Listed | None:
    """What the playlist at `base` lists (None: no playlist yet)."""
    status, body = get(base + PATH + "index.m3u8")
    if status != 200:
        return None
    segments, init = [], ""
    for line in body.decode().splitlines():
        if line.startswith("#EXT-X-MAP:"):
            (init,) = re.findall(r'^#EXT-X-MAP:URI="([^"]+)"$', line)
        elif line.startswith("segment-"):
            assert re.fullmatch(r"segment-\S+\.m4s", line), line
            segments.append((init, line))
    return Listed(tuple(segments))


def picture_sizes(init: bytes, segment: bytes) -> set[tuple[int, int]]:
    container: Any
    with av.open(io.BytesIO(init + segment)) as container:
        return {(frame.width, frame.height) for frame in container.decode(video=0)}


def play(base: str, inits: tuple[str, ...], names: tuple[str, ...]) -> dict[str, bytes]:
    """A player: the inits and the segments as it gets them (name -> bytes; blocking)."""
    got = {}
    for name in (*inits, *names):
        status, body = get(base + PATH + name)
        if status == 200:  # a segment gone from the window since: a player skips it
            got[name] = body
    return got


async def test_a_restarted_stream_has_new_urls_and_the_cache_never_mixes_runs(rig: Rig) -> None:
    before = await first_run(rig)
    old = await asyncio.to_thread(play, rig.edge, (before.init,), before.of(before.run))
    assert before.init in old and len(old) >= 2  # now held by the cache too
    for name in before.of(before.run):
        if name in old:
            sizes = await asyncio.to_thread(picture_sizes, old[before.init], old[name])
            assert sizes == {(320, 240)}

    first_entry = rig.media.streams[PATTERN_STREAM]
    rig.sensors.reading = HOT
    assert await rig.media.thermal.check() == MAX_LEVEL  # a new pipeline at 160x120
    # The old run's stop finishing late (as `_watch`'s does, outside the lock) keeps nothing
    # over the newer run's: the supervisor holds only the numbers (review s7a H2, H5).
    await rig.media._streams._stop_pipeline(first_entry)
    kept = rig.media._streams.kept_hls(PATTERN_STREAM)  # the supervisor's map
    assert kept is not None and (kept.segments, kept.init) == ((), b"")
    await old_run_still_served(rig, before, old)

    later: list[Listed] = []

    def new_run_listed() -> bool:
        playlist = listed(rig.edge)  # a player reloading the playlist through the cache
        later[:] = [playlist] if playlist is not None and playlist.run != before.run else []
        return bool(later)

    await eventually_in_thread(new_run_listed, 30, "the new run's playlist through the cache")
    after = later[0]
    assert after.init != before.init
    assert set(after.of(after.run)).isdisjoint(name for _, name in before.segments)
    assert all(name.startswith(f"segment-{after.run}-") for name in after.of(after.run))
    for init, name in after.segments:  # each name under its own run's init
        assert name.startswith(f"segment-{run_of(init)}-"), after
    await new_run_through_the_cache(rig, after, old)
    await old_run_gone_once_aged_out(rig, before)


async def first_run(rig: Rig) -> Listed:
    first: list[Listed] = []

    def two_segments() -> bool:
        playlist = listed(rig.edge)
        first[:] = [playlist] if playlist is not None and len(playlist.segments) >= 2 else []
        return bool(first)

    await eventually_in_thread(two_segments, 30, "two segments through the cache")
    before = first[0]
    assert re.fullmatch(r"init-[0-9a-f]{8}\.mp4", before.init)
    assert all(name.startswith(f"segment-{before.run}-") for _, name in before.segments)
    return before


async def old_run_still_served(rig: Rig, before: Listed, old: dict[str, bytes]) -> None:
    """Right after the restart the box still lists the old run's segments and serves them and
    their init, the old run's own bytes (RFC 8216 6.2.2)."""
    now = await asyncio.to_thread(listed, rig.box)
    assert now is not None, "the playlist right after the restart"
    listed_old = now.of(before.run)
    assert len(listed_old) >= 2, now  # not one new segment alone: the old window slides out
    for name in (before.init, *listed_old):
        status, body = await asyncio.to_thread(get, rig.box + PATH + name)
        assert status == 200, name
        if name in old:
            assert body == old[name], name


async def new_run_through_the_cache(rig: Rig, after: Listed, old: dict[str, bytes]) -> None:
    """The player after the restart, through the cache: the new run's init and segments decode
    together at the new size (none is the old run's), the old run's still listed at the old."""
    inits = tuple(dict.fromkeys(init for init, _ in after.segments))
    got = await asyncio.to_thread(play, rig.edge, inits, tuple(n for _, n in after.segments))
    assert after.init in got and got[after.init] not in old.values()
    new = [name for name in after.of(after.run) if name in got]
    assert new
    for init, name in after.segments:
        if name not in got:
            continue
        if run_of(init) == after.run:
            assert got[name] not in old.values()
        sizes = await asyncio.to_thread(picture_sizes, got[init], got[name])
        assert sizes == ({(160, 120)} if run_of(init) == after.run else {(320, 240)}), name
        if name in old:
            assert got[name] == old[name], name


async def old_run_gone_once_aged_out(rig: Rig, before: Listed) -> None:
    """Once the old run's segments slid out of the window, its URLs answer 404 at the box (the
    cache may still hold its copies, the old run's own bytes under its names); the old form
    too."""

    def aged_out() -> bool:
        playlist = listed(rig.box)
        return playlist is not None and not playlist.of(before.run)

    await eventually_in_thread(aged_out, 30, "the old run's segments out of the window")
    for name in (before.init, *before.of(before.run), "init.mp4", "segment-0.m4s"):
        status, _ = await asyncio.to_thread(get, rig.box + PATH + name)
        assert status == 404, name
