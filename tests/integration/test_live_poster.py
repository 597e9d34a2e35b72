"""The live poster on a cold cache: one decode for a crowd of requests (issue #21 item 10), with
keyframes from a real encoder and, over HTTP, the app in process on a real MediaManager."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp.test_utils import TestServer

from edged.config import MediaConfig, StorageConfig
from edged.devices.board import BUILTIN_FALLBACK, Board, BoardFacts
from edged.errors import MediaError
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.live import LiveHub, LivePoster
from edged.media.packets import EncodedPacket
from edged.media.recorder import Segment, SegmentIdentity
from edged.media.streams import PATTERN_STREAM, MediaManager
from edged.web.app import create_app
from tests.integration.test_media import KeyframeSeen
from tests.support import started_in_waves
from tests.web_context import live_view, web_context

pytestmark = pytest.mark.integration

CROWD = 200


def fed_hub(gops: int = 2) -> LiveHub:
    """A hub fed `gops` GOPs of the test pattern by libx264."""
    settings = EncoderSettings(320, 240, 15, 300_000, gop_seconds=1.0)
    encoder = Encoder("libx264", settings)
    hub = LiveHub("cam", 320, 240, 15, expects_audio=False)
    with av.open("testsrc2=size=320x240:rate=15", format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            if index == gops * 15:
                break
            for packet in encoder.encode(frame, index * 6000, 1_700_000_000 + index / 15):
                hub.offer(packet, encoder.extradata)
    return hub


def assert_poster(jpeg: bytes) -> None:
    assert jpeg[:3] == b"\xff\xd8\xff"
    (picture,) = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))
    assert (picture.width, picture.height) == (320, 240)


async def test_a_crowd_on_a_cold_poster_costs_one_decode() -> None:
    hub = await asyncio.to_thread(fed_hub)
    keyframe = hub.gop.keyframe
    assert keyframe is not None
    now = time.monotonic()
    crowd = await started_in_waves(lambda: hub.poster.jpeg(keyframe, hub.extradata, now), CROWD)
    posters = await asyncio.gather(*crowd)
    assert hub.poster.decodes == 1
    assert len(set(posters)) == 1
    assert_poster(posters[0])
    assert await hub.poster.jpeg(keyframe, hub.extradata, now + 3600) == posters[0]
    assert hub.poster.decodes == 1, "the keyframe still current: its poster still answers"


async def test_a_newer_keyframe_is_decoded_once_the_poster_is_old() -> None:
    hub = await asyncio.to_thread(fed_hub)
    keyframe = hub.gop.keyframe
    assert keyframe is not None
    newer = dataclasses.replace(keyframe, sequence=keyframe.sequence + 15)
    now = time.monotonic()
    first = await hub.poster.jpeg(keyframe, hub.extradata, now)
    assert await hub.poster.jpeg(newer, hub.extradata, now + 1) == first
    assert hub.poster.decodes == 1, "a poster younger than max_age answers for a newer keyframe"
    later = now + hub.poster.max_age
    await asyncio.gather(
        *await started_in_waves(lambda: hub.poster.jpeg(newer, hub.extradata, later), CROWD)
    )
    assert hub.poster.decodes == 2


async def test_a_request_that_leaves_does_not_cancel_the_decode_for_the_others() -> None:
    hub = await asyncio.to_thread(fed_hub)
    keyframe = hub.gop.keyframe
    assert keyframe is not None
    now = time.monotonic()
    leaving = asyncio.create_task(hub.poster.jpeg(keyframe, hub.extradata, now))
    staying = asyncio.create_task(hub.poster.jpeg(keyframe, hub.extradata, now))
    await asyncio.sleep(0)  # both are waiting for the one decode
    leaving.cancel()
    assert_poster(await staying)
    assert leaving.cancelled()
    assert hub.poster.decodes == 1


async def test_a_keyframe_that_does_not_decode_is_tried_once() -> None:
    poster = LivePoster("cam")
    broken = EncodedPacket(
        b"\x00\x00\x00\x01\x65" + bytes(64), 0, 0, 1, Fraction(1, 90000), True, 0, 0.0
    )
    now = time.monotonic()
    results = await asyncio.gather(
        *await started_in_waves(lambda: poster.jpeg(broken, b"", now), CROWD),
        return_exceptions=True,
    )
    assert all(isinstance(result, MediaError) for result in results)
    with pytest.raises(MediaError):
        await poster.jpeg(broken, b"", now + 3600)
    assert poster.decodes == 1


async def no_upload(segment: Segment) -> None:
    pass


class NothingUploaded:
    """The upload ledger of a box with sync off: every recording known, none uploaded."""

    def is_done(self, path: str) -> bool:
        return False

    def knows(self, path: str) -> bool:
        return True


@pytest.fixture
async def pattern(tmp_path: Path) -> AsyncIterator[tuple[str, MediaManager]]:
    """The app in process on a MediaManager running the test pattern; (base URL, manager)."""
    context = web_context(tmp_path)
    media = MediaManager(
        MediaConfig(test_pattern="on", pattern_size="320x240", pattern_fps=15),
        StorageConfig(min_free_bytes=0),
        Board(BoardFacts("", (), "x86_64", False, frozenset()), BUILTIN_FALLBACK, "test"),
        context.metrics.streams,
        tmp_path,
        SegmentIdentity,
        no_upload,
        NothingUploaded(),
    )
    context.live = live_view(media, context.metrics)
    await media.start(None)
    server = TestServer(create_app(context), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")), media
    finally:
        await server.close()
        await media.stop()


async def test_two_hundred_concurrent_poster_requests_share_one_decode(
    pattern: tuple[str, MediaManager],
) -> None:
    base, media = pattern
    hub = media.hub(PATTERN_STREAM)
    assert hub is not None
    seen = KeyframeSeen()
    media.streams[PATTERN_STREAM].pipeline.add_output(seen)  # after the hub: it has it first
    async with asyncio.timeout(20):
        await seen.event.wait()
    assert hub.gop.keyframe is not None
    # Keyframes keep coming each second: the poster is held for the whole crowd, however slow
    # the machine, so the count depends on sharing alone.
    hub.poster.max_age = 3600
    url = f"{base}/live/{PATTERN_STREAM}/poster.jpg"

    async def get(client: aiohttp.ClientSession) -> bytes:
        async with client.get(url) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "image/jpeg"
            return await response.read()

    async def crowd() -> list[bytes]:
        # In waves of 16: asyncio accepts up to 128 connections in one callback, which debug
        # mode's bookkeeping (a traceback per task) makes 0.05 s here, the slow-callback bound
        # (about 5 ms without it); 32 at once once took 0.051 s on a loaded machine. 16 at once
        # still cost 16 decodes without the sharing.
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=connector) as client:
            return await asyncio.gather(*(get(client) for _ in range(CROWD)))

    # The phones are not the box: the crowd runs on a loop of its own, in another thread.
    posters = await asyncio.to_thread(asyncio.run, crowd())
    assert hub.poster.decodes == 1
    assert len(set(posters)) == 1
    assert_poster(posters[0])
