"""The clip cache with real media (PyAV), a real S3 server (moto) and the real daemon. The async
tests use moto in a child process (`moto`): its threads never take the GIL from their loop."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from edged.cache.prepare import PrepareError, prepare
from edged.cache.store import AssetStore
from edged.cache.upstream import PullThrough, Replicator
from tests.clips import make_clip
from tests.conftest import StartDaemon
from tests.integration.upload_support import (
    BUCKET,
    make_store,
    minio_client,
    moto,
    s3,
    upstream_settings,
)
from tests.s3compat import S3Endpoint
from tests.s3server import MotoProcess, S3Server
from tests.support import eventually_in_thread

pytestmark = pytest.mark.integration
__all__ = ["moto", "s3"]


def first_frame_from_bytes(data: bytes) -> tuple[int, int]:
    container: Any
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


# -- the store -------------------------------------------------------------------------------


def test_add_prepares_pins_and_evicts(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    pinned = store.add(make_clip(tmp_path / "a.mp4"), "teaser.mp4", pin=True, origin="test")
    assert pinned.video_codec == "h264" and not pinned.transcoded
    hot = store.hot("teaser.mp4")
    assert hot is not None and len(hot) == pinned.head_size
    assert first_frame_from_bytes(hot) == (320, 240)  # the head alone decodes a frame
    odd = store.add(
        make_clip(tmp_path / "b.mkv", codec="mpeg4", fmt="matroska"),
        "odd.mp4",
        pin=False,
        origin="test",
    )
    assert odd.transcoded and odd.video_codec == "h264"
    store.touch("odd.mp4", now=1.0)  # least recently used
    third = store.add(make_clip(tmp_path / "c.mp4"), "third.mp4", pin=False, origin="test")
    store.max_bytes = pinned.size + third.size
    assert store.evict() == ["odd.mp4"]
    assert not store.path("odd.mp4").exists() and store.path("teaser.mp4").exists()
    store.max_bytes = 1  # pinned clips stay even over the cap
    assert store.evict() == ["third.mp4"]
    assert [a.name for a in store.assets()] == ["teaser.mp4"]
    again = AssetStore(tmp_path / "cache", max_bytes=10**9)  # the index survives a restart
    assert again.get("teaser.mp4") == store.get("teaser.mp4")
    assert again.hot("teaser.mp4") == hot


def test_transcode_takes_the_boards_first_working_encoder(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "odd.mkv", seconds=2.5, codec="mpeg4", fmt="matroska")
    # a Pi's encoder first: no /dev/video11 here, so it fails to open and libx264 takes over
    prepared = prepare(source, tmp_path / "odd.mp4", ("h264_v4l2m2m", "h264_nvenc"))
    assert prepared.transcoded and prepared.encoder == "libx264"
    container: Any
    with av.open(str(tmp_path / "odd.mp4")) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        keys = [float(p.pts * p.time_base) for p in packets if p.is_keyframe]
        assert container.streams.video[0].codec_context.name == "h264"
    assert len(packets) == 75 and keys == [0.0, 1.0, 2.0]  # every frame, a GOP per second
    with av.open(str(tmp_path / "odd.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 75


def test_refuses_non_media_corrupt_and_truncated(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(20000))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    good = make_clip(tmp_path / "good.mp4", seconds=3)
    truncated = tmp_path / "truncated.mkv"
    data = make_clip(tmp_path / "whole.mkv", seconds=3, fmt="matroska").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for bad, reason in (
        (junk, "not a media file"),
        (text, "not a media file"),
        (truncated, "truncated"),
    ):
        with pytest.raises(PrepareError, match=reason):
            store.add(bad, bad.name, pin=False, origin="test")
        assert store.get(bad.name) is None
    assert not list(store.incoming.iterdir()), "nothing half-written is left"
    with pytest.raises(PrepareError, match="not allowed"):
        store.add(good, "../escape.mp4", pin=False, origin="test")


def test_crash_leftovers_are_never_served(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    (store.incoming / "half.mp4.12.34.mp4").write_bytes(b"partial")
    AssetStore(tmp_path / "cache", max_bytes=10**9)
    assert not list(store.incoming.iterdir())


# -- upstream --------------------------------------------------------------------------------


def upload(server: S3Endpoint, key: str, data: bytes, sha256: str | None = None) -> None:
    metadata: dict[str, str | list[str] | tuple[str]] = {
        "sha256": sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    }
    minio_client(server).put_object(BUCKET, key, io.BytesIO(data), len(data), metadata=metadata)


def test_replicate_manifest_pin_evict_resume_and_refuse(tmp_path: Path, s3: S3Server) -> None:
    clips = {
        name: make_clip(tmp_path / name, seconds=2).read_bytes()
        for name in ("teaser.mp4", "promo.mp4", "extra.mp4")
    }
    for name, data in clips.items():
        upload(s3, f"assets/{name}", data)
    upload(s3, "assets/broken.mp4", clips["promo.mp4"], sha256="0" * 64)  # lies about itself
    manifest = {
        "assets": [
            {"name": "teaser.mp4", "pin": True},
            {"name": "promo.mp4", "pin": False},
            {"name": "broken.mp4", "pin": True},
            {"name": "extra.mp4", "pin": False},
        ]
    }
    upload(s3, "manifest.json", json.dumps(manifest).encode())
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    # An earlier download of the teaser was cut off after 1000 bytes.
    (store.partial / "teaser.mp4.part").write_bytes(clips["teaser.mp4"][:1000])
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets")
    fetched = replicator.sync()
    assert fetched == ["teaser.mp4", "promo.mp4", "extra.mp4"]
    assert "broken.mp4" in replicator.last_error and store.get("broken.mp4") is None
    assert ("/edged/assets/teaser.mp4", "bytes=1000-") in s3.gets  # resumed, not restarted
    teaser = store.get("teaser.mp4")
    assert teaser is not None and teaser.pinned and store.hot("teaser.mp4") is not None
    assert teaser.origin_sha256 == hashlib.sha256(clips["teaser.mp4"]).hexdigest()
    assert replicator.sync() == []  # nothing new: nothing fetched again

    store.max_bytes = teaser.size + 1  # a small cap: unpinned clips go, the pinned one stays
    store.evict()
    assert [a.name for a in store.assets()] == ["teaser.mp4"]


def upload_clip(server: S3Endpoint, path: Path, seconds: float) -> bytes:
    """A clip made at `path`, uploaded under assets/ with its name; its bytes."""
    data = make_clip(path, seconds=seconds).read_bytes()
    upload(server, f"assets/{path.name}", data)
    return data


def upload_faststart_clip(server: S3Endpoint, directory: Path) -> bytes:
    """A clip prepared as the cache stores it (metadata first), uploaded as faststart.mp4."""
    store = AssetStore(directory / "prep", max_bytes=10**9)
    store.add(
        make_clip(directory / "faststart.mp4", seconds=3), "faststart.mp4", pin=False, origin="test"
    )
    data = store.path("faststart.mp4").read_bytes()
    upload(server, "assets/faststart.mp4", data)
    return data


async def test_pull_through_with_a_manifest_fetches_only_the_clips_it_lists(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Review 16b, finding 3: a clip uploaded to the bucket ahead of its release, to be listed
    then, was anyone's who guessed its name."""
    await asyncio.to_thread(upload_clip, moto, tmp_path / "finale.mp4", 1)
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    pull = PullThrough(store, make_store(moto), "assets", listed_only=True)
    assert await pull.open("finale.mp4") is None  # before any manifest read: nothing
    store.want(["other.mp4"])
    assert await pull.open("finale.mp4") is None
    asked = await asyncio.to_thread(lambda: moto.heads.count("/edged/assets/finale.mp4"))
    assert asked == 0  # not even asked
    store.want(["other.mp4", "finale.mp4"])  # listed at its release
    download = await pull.open("finale.mp4")
    assert download is not None
    while not download.done:
        await download.progress.wait()
        download.progress.clear()
    assert store.get("finale.mp4") is not None


def test_a_lost_facts_file_withholds_the_clips_on_the_box(tmp_path: Path) -> None:
    """Review 16b, finding 3, through the store: the clips on the box when facts.json could not
    be read are withheld (across a restart) until listed or PATCHed; one removed is forgotten."""
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    for name in ("finale.mp4", "teaser.mp4"):
        store.add(make_clip(tmp_path / name, seconds=1), name, pin=False, origin="t")
    store.facts.patch("finale.mp4", {"exclusive": True})
    (tmp_path / "cache" / "facts.json").write_text('{"patched": {"finale.mp4": "exclusive"}}')
    again = AssetStore(tmp_path / "cache", max_bytes=10**9)
    assert again.facts.get("finale.mp4").withheld and again.facts.get("teaser.mp4").withheld
    assert AssetStore(tmp_path / "cache", max_bytes=10**9).facts.get("teaser.mp4").withheld
    again.remove("teaser.mp4")
    assert not again.facts.get("teaser.mp4").withheld  # gone from the box: nothing to hold


async def test_pull_through_shares_one_download(tmp_path: Path, moto: MotoProcess) -> None:
    await asyncio.to_thread(upload_clip, moto, tmp_path / "walkin.mp4", 3)
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    pull = PullThrough(store, make_store(moto), "assets")
    opened = await asyncio.gather(*(pull.open("walkin.mp4") for _ in range(10)))
    downloads = [download for download in opened if download is not None]
    assert len(downloads) == 10 and len({id(download) for download in downloads}) == 1
    while not downloads[0].done:
        await downloads[0].progress.wait()
        downloads[0].progress.clear()
    gets = await asyncio.to_thread(lambda: moto.gets)  # asked of moto's child process
    assert len([get for get in gets if get[0] == "/edged/assets/walkin.mp4"]) == 1
    assert store.get("walkin.mp4") is not None
    assert await pull.open("missing.mp4") is None


# -- the daemon over HTTP --------------------------------------------------------------------


def request(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read()


def _lower(headers: object) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}  # type: ignore[attr-defined]


def test_http_edge_cases(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon = start_daemon({"mdns": {"enabled": False}, "media": {"test_pattern": "off"}})
    assert daemon.data_dir is not None
    clip = make_clip(tmp_path / "teaser.mp4", seconds=2)
    token = (daemon.data_dir / "admin.token").read_text().strip()
    put = urllib.request.Request(  # noqa: S310
        daemon.url + "/api/v1/assets/teaser.mp4?pin=true",
        data=clip.read_bytes(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(put, timeout=30) as response:  # noqa: S310
        assert response.status == 201
    refused = urllib.request.Request(  # noqa: S310
        daemon.url + "/api/v1/assets/junk.mp4",
        data=b"not a video",
        method="PUT",
        headers={"Authorization": f"Bearer {token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(refused, timeout=30)  # noqa: S310
    assert raised.value.code == 422 and "not a media file" in raised.value.read().decode()
    assert request(daemon.url + "/api/v1/assets/x.mp4", "PUT")[0] == 401

    url = daemon.url + "/assets/teaser.mp4"
    status, headers, body = request(url)
    size = len(body)
    assert status == 200 and headers["content-type"] == "video/mp4"
    assert first_frame_from_bytes(body) == (320, 240)
    etag = headers["etag"]
    assert "max-age" in headers["cache-control"] and headers["accept-ranges"] == "bytes"

    status, headers, part = request(url, Range="bytes=0-99")
    assert status == 206 and part == body[:100]
    assert headers["content-range"] == f"bytes 0-99/{size}" and headers["etag"] == etag
    assert request(url, Range="bytes=-10")[2] == body[-10:]
    assert request(url, Range="bytes=100-")[2] == body[100:]
    # from the RAM head across into the file: the head is one 320x240 keyframe, a few KiB
    assert request(url, Range=f"bytes=50-{size // 2}")[2] == body[50 : size // 2 + 1]
    assert body == (daemon.data_dir / "cache" / "assets" / "teaser.mp4.mp4").read_bytes()
    assert request(url, Range=f"bytes={size}-")[0] == 416
    assert request(url, Range="bytes=0-1,5-6")[0] == 416
    assert request(url, **{"If-None-Match": etag})[0] == 304
    assert request(url, Range="bytes=0-9", **{"If-Range": etag})[0] == 206
    assert request(url, Range="bytes=0-9", **{"If-Range": '"stale"'})[0] == 200
    status, headers, body_head = request(url, "HEAD")
    assert status == 200 and body_head == b"" and int(headers["content-length"]) == size

    for bad in (
        "/assets/..%2F..%2Fadmin.token",
        "/assets/%2e%2e",
        "/assets/..",
        "/assets/nope.mp4",
        "/assets/%2Fetc%2Fpasswd",
        "/watch/nope.mp4",
        "/posters/..%2Fadmin.token.jpg",
    ):
        status, _, body_bad = request(daemon.url + bad)
        assert status == 404, bad
        assert token.encode() not in body_bad
    assert request(url, **{"X-Huge": "a" * 20000})[0] in (400, 431)

    status, _, page = request(daemon.url + "/watch/teaser.mp4")
    # 3 KiB: the first frame's markup plus the player's title, back and next clip (#16)
    assert status == 200 and b"autoplay muted playsinline" in page and len(page) < 3072
    status, headers, poster = request(daemon.url + "/posters/teaser.mp4.jpg")
    assert status == 200 and poster[:3] == b"\xff\xd8\xff"
    _, _, landing = request(daemon.url + "/")
    assert b'href="/watch/teaser.mp4"' in landing
    _, _, metrics = request(daemon.url + "/metrics")
    assert b'edged_cache_assets{pinned="true"} 1.0' in metrics
    assert b'edged_cache_requests_total{result="hit_memory"}' in metrics
    assert daemon.stop() == 0


def test_cache_cli(tmp_path: Path) -> None:
    from tests.support import run_edged

    clip = make_clip(tmp_path / "promo.mp4")
    added = run_edged("cache", "--data-dir", str(tmp_path / "d"), "add", str(clip), "--pin")
    assert added.returncode == 0, added.stderr
    assert "added promo.mp4" in added.stdout and "pinned" in added.stdout
    listed = json.loads(
        run_edged("cache", "--data-dir", str(tmp_path / "d"), "list", "--json").stdout
    )
    assert [a["name"] for a in listed["assets"]] == ["promo.mp4"]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    refused = run_edged("cache", "--data-dir", str(tmp_path / "d"), "add", str(junk))
    assert refused.returncode == 1 and "not a media file" in refused.stderr


async def test_pull_through_over_http_ten_clients_one_download(
    tmp_path: Path, moto: MotoProcess, start_daemon: StartDaemon
) -> None:
    await asyncio.to_thread(upload_clip, moto, tmp_path / "walkin.mp4", 3)
    daemon = await asyncio.to_thread(
        start_daemon,
        {
            "mdns": {"enabled": False},
            "media": {"test_pattern": "off"},
            "upstream": upstream_settings(tmp_path, moto),
        },
    )

    async def fetch(client: aiohttp.ClientSession) -> bytes:
        async with client.get(daemon.url + "/assets/walkin.mp4") as response:
            assert response.status == 200
            return await response.read()

    async with aiohttp.ClientSession() as client:
        bodies = await asyncio.gather(*(fetch(client) for _ in range(10)))
    # PyAV wrote this clip with its metadata at the end: nothing plays before the last byte, so
    # the clients get the prepared (fast-start) clip once it is stored.
    assert all(body == bodies[0] for body in bodies)
    assert first_frame_from_bytes(bodies[0][: 256 * 1024]) == (320, 240)
    gets = await asyncio.to_thread(lambda: moto.gets)
    assert len([get for get in gets if get[0] == "/edged/assets/walkin.mp4"]) == 1

    fast = await asyncio.to_thread(upload_faststart_clip, moto, tmp_path)  # streams as it arrives
    async with (
        aiohttp.ClientSession() as client,
        client.get(daemon.url + "/assets/faststart.mp4") as response,
    ):
        assert response.headers["Cache-Control"] == "no-cache"  # the growing download
        assert await response.read() == fast
    await eventually_in_thread(  # stored and prepared
        lambda: request(daemon.url + "/watch/walkin.mp4")[0] == 200, 20, "walkin.mp4 prepared"
    )
    _, _, metrics = await asyncio.to_thread(request, daemon.url + "/metrics")
    assert b'edged_cache_requests_total{result="pull_through"}' in metrics
    assert await asyncio.to_thread(daemon.stop) == 0
