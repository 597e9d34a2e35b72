"""The manifest replicator and pull-through misses against a real S3 (moto) with real clips:
what crosses the uplink is counted with the server's request tally (issue #21 items 5-9). The
async tests use moto in a child process (`moto`): its threads never take the GIL from their
loop; the others use it in this process (`s3`), whose HEAD hook can run this test's code."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from edged.cache.manifest import CHECKSUM, NO_ROOM, NOT_IN_BUCKET, NOT_VIDEO, TOO_LARGE
from edged.cache.store import AssetStore
from edged.cache.upstream import PullThrough, Replicator
from edged.supervise import Supervisor
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
from tests.support import eventually

pytestmark = pytest.mark.integration
__all__ = ["moto", "s3"]

UPSTREAM_LOGGER = "edged.cache.upstream"


def upload(server: S3Endpoint, key: str, data: bytes, sha256: str | None = None) -> None:
    metadata: dict[str, str | list[str] | tuple[str]] = {
        "sha256": sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    }
    minio_client(server).put_object(BUCKET, key, io.BytesIO(data), len(data), metadata=metadata)


def upload_clip(server: S3Endpoint, path: Path, seconds: float) -> bytes:
    """A clip made at `path`, uploaded under assets/ with its name; its bytes."""
    data = make_clip(path, seconds=seconds).read_bytes()
    upload(server, f"assets/{path.name}", data)
    return data


def put_manifest(server: S3Endpoint, entries: Sequence[object]) -> None:
    upload(server, "manifest.json", json.dumps({"assets": entries}).encode())


def gets(server: S3Server | MotoProcess, name: str) -> int:
    return sum(1 for path, _ in server.gets if path == f"/{BUCKET}/assets/{name}")


def heads(server: S3Server | MotoProcess, name: str) -> int:
    return server.heads.count(f"/{BUCKET}/assets/{name}")


async def run_passes(replicator: Replicator, passes: int) -> None:
    """The replicator's own loop under the supervisor, for `passes` passes."""
    supervisor = Supervisor(None)
    await replicator.start(supervisor)
    try:
        await eventually(lambda: replicator.passes >= passes, 30.0)
    finally:
        await replicator.stop()
        await supervisor.stop()


def not_replicated(replicator: Replicator) -> dict[str, dict[str, object]]:
    return {item["name"]: item for item in replicator.status()["not_replicated"]}


async def test_a_clip_larger_than_the_cap_is_reported_and_never_fetched(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Item 5: it used to be downloaded in full, evicted and downloaded again every recheck."""
    big = await asyncio.to_thread(upload_clip, moto, tmp_path / "big.mp4", 2)
    await asyncio.to_thread(put_manifest, moto, [{"name": "big.mp4", "pin": False}])
    store = AssetStore(tmp_path / "cache", max_bytes=len(big) // 2)
    replicator = Replicator(store, make_store(moto), "manifest.json", "assets", interval=0.05)
    await run_passes(replicator, 5)
    assert await asyncio.to_thread(gets, moto, "big.mp4") == 0
    # its size is remembered, not asked for each pass
    assert await asyncio.to_thread(heads, moto, "big.mp4") <= 1
    assert not_replicated(replicator)["big.mp4"]["kind"] == TOO_LARGE
    assert "big.mp4" in replicator.last_error and store.get("big.mp4") is None


async def test_unpinned_clips_over_the_cap_do_not_churn(tmp_path: Path, moto: MotoProcess) -> None:
    """Item 5: three clips where two fit: the third is reported, the first two fetched once."""
    clips = {
        name: await asyncio.to_thread(upload_clip, moto, tmp_path / name, 2)
        for name in ("one.mp4", "two.mp4", "three.mp4")
    }
    await asyncio.to_thread(put_manifest, moto, [{"name": name, "pin": False} for name in clips])
    largest = max(len(data) for data in clips.values())
    store = AssetStore(tmp_path / "cache", max_bytes=int(largest * 2.6))
    replicator = Replicator(store, make_store(moto), "manifest.json", "assets", interval=0.05)
    await run_passes(replicator, 5)
    assert [await asyncio.to_thread(gets, moto, name) for name in clips] == [1, 1, 0]
    assert sorted(a.name for a in store.assets()) == ["one.mp4", "two.mp4"]
    assert not_replicated(replicator)["three.mp4"]["kind"] == NO_ROOM


async def test_a_wrong_sha256_is_fetched_once_then_backs_off(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Item 6: it used to be downloaded in full every recheck."""
    await asyncio.to_thread(upload_clip, moto, tmp_path / "broken.mp4", 2)
    await asyncio.to_thread(put_manifest, moto, [{"name": "broken.mp4", "sha256": "0" * 64}])
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(moto), "manifest.json", "assets", interval=0.05)
    await run_passes(replicator, 5)
    assert await asyncio.to_thread(gets, moto, "broken.mp4") == 1
    refused = not_replicated(replicator)["broken.mp4"]
    assert refused["kind"] == CHECKSUM and int(str(refused["retry_in"])) > 0
    assert store.get("broken.mp4") is None and not list(store.partial.iterdir())


def test_a_thousand_missing_clips_log_one_line_a_pass(
    tmp_path: Path, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 6: 1,000 missing entries made 1,000 ERROR lines (and HEADs) every pass."""
    missing = [f"missing-{index:04d}.mp4" for index in range(1000)]
    put_manifest(s3, missing)
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets")
    caplog.set_level(logging.DEBUG, logger=UPSTREAM_LOGGER)
    for _ in range(3):
        assert replicator.sync() == []
    lines = [r for r in caplog.records if r.name == UPSTREAM_LOGGER]
    assert len(lines) == 3, [r.getMessage()[:100] for r in lines]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "1000 not in the bucket (missing-0000.mp4," in lines[0].getMessage()
    assert sum(heads(s3, name) for name in missing) == 1000  # the first pass only
    assert not_replicated(replicator)["missing-0999.mp4"]["kind"] == NOT_IN_BUCKET


def test_a_new_manifest_cancels_the_running_pass(tmp_path: Path, s3: S3Server) -> None:
    """Item 6: a new manifest used to wait for the end of a pass over the old one."""
    missing = [f"missing-{index:04d}.mp4" for index in range(300)]
    put_manifest(s3, missing)
    clip = make_clip(tmp_path / "teaser.mp4", seconds=2).read_bytes()
    upload(s3, "assets/teaser.mp4", clip)
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets", manifest_poll=0.0)
    manifest_heads = 0

    def replace_the_manifest(etag: str) -> str:  # the manifest's 20th HEAD: mid-pass
        nonlocal manifest_heads
        manifest_heads += 1
        if manifest_heads == 20:
            put_manifest(s3, ["teaser.mp4"])
        return etag

    s3.head_etag = replace_the_manifest
    assert replicator.sync() == ["teaser.mp4"]
    assert sum(heads(s3, name) for name in missing) < 30  # the old pass stopped early
    assert replicator.status()["clips_here"] == 1 and not replicator.status()["not_replicated"]


def test_an_invalid_name_skips_only_that_entry(tmp_path: Path, s3: S3Server) -> None:
    """Item 7: one bad name used to reject the whole manifest, pinned clips included."""
    clips = {
        name: make_clip(tmp_path / name, seconds=2).read_bytes() for name in ("a.mp4", "b.mp4")
    }
    for name, data in clips.items():
        upload(s3, f"assets/{name}", data)
    put_manifest(
        s3,
        [
            {"name": "a.mp4", "pin": True},
            {"name": "../escape.mp4"},
            {"name": "b.mp4", "pin": False},
        ],
    )
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets")
    assert replicator.sync() == ["a.mp4", "b.mp4"]
    pinned = store.get("a.mp4")
    assert pinned is not None and pinned.pinned and store.hot("a.mp4") is not None
    skipped = replicator.status()["skipped"]
    assert len(skipped) == 1 and skipped[0]["index"] == 1
    assert "'../escape.mp4' is not an asset name" in skipped[0]["reason"]
    assert "1 entries skipped" in replicator.last_error


async def test_a_non_video_object_leaves_no_partial_and_backs_off(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Item 8: it used to stay in cache/partial/ for ever and be prepared again every recheck."""
    notes = b"these are the stage notes, not a video\n" * 100
    await asyncio.to_thread(upload, moto, "assets/notes.mp4", notes)
    await asyncio.to_thread(put_manifest, moto, ["notes.mp4"])
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(moto), "manifest.json", "assets", interval=0.05)
    await run_passes(replicator, 4)
    assert await asyncio.to_thread(gets, moto, "notes.mp4") == 1
    assert not list(store.partial.iterdir())
    refused = not_replicated(replicator)["notes.mp4"]
    assert refused["kind"] == NOT_VIDEO and "not a media file" in str(refused["reason"])
    assert str(tmp_path) not in str(refused["reason"])


async def test_a_miss_is_remembered_briefly_and_looked_up_once(
    tmp_path: Path, moto: MotoProcess
) -> None:
    """Item 9 at the class: concurrent opens share one HEAD; the miss expires."""
    now = 1000.0
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    pull = PullThrough(store, make_store(moto), "assets", clock=lambda: now)
    assert await asyncio.gather(*(pull.open("nope.mp4") for _ in range(50))) == [None] * 50
    assert await pull.open("nope.mp4") is None
    assert await asyncio.to_thread(heads, moto, "nope.mp4") == 1
    now += 60.0
    assert await pull.open("nope.mp4") is None
    assert await asyncio.to_thread(heads, moto, "nope.mp4") == 2


async def test_two_hundred_requests_for_a_missing_clip_make_one_upstream_head(
    tmp_path: Path, moto: MotoProcess, start_daemon: StartDaemon
) -> None:
    """Item 9: 200 requests for one missing name used to make 200 upstream HEADs."""
    daemon = await asyncio.to_thread(
        start_daemon,
        {
            "mdns": {"enabled": False},
            "media": {"test_pattern": "off"},
            "upstream": upstream_settings(tmp_path, moto),
        },
    )

    async def fetch(client: aiohttp.ClientSession) -> int:
        async with client.get(daemon.url + "/assets/nope.mp4") as response:
            await response.read()
            return response.status

    async def crowd() -> list[int]:
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as client:
            return await asyncio.gather(*(fetch(client) for _ in range(200)))

    # The 200 clients are not the box: they run on a loop of their own, in another thread.
    statuses = await asyncio.to_thread(asyncio.run, crowd())
    assert statuses == [404] * 200
    assert await asyncio.to_thread(heads, moto, "nope.mp4") == 1
    assert await asyncio.to_thread(daemon.stop) == 0


def test_the_status_api_says_which_clips_are_not_here_and_why(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    """What the crew and the ops team read instead of the log: each clip not replicated."""
    put_manifest(s3, ["missing.mp4", {"name": "../bad", "pin": True}])
    daemon = start_daemon(
        {
            "mdns": {"enabled": False},
            "media": {"test_pattern": "off"},
            "upstream": upstream_settings(tmp_path, s3),
            "cache": {"manifest": "manifest.json", "recheck_seconds": 60},
        }
    )

    assert daemon.data_dir is not None
    crew = {"Authorization": f"Bearer {(daemon.data_dir / 'admin.token').read_text().strip()}"}

    def replication(headers: dict[str, str] = crew) -> dict[str, object]:
        call = urllib.request.Request(daemon.url + "/api/v1/status", headers=headers)  # noqa: S310
        with urllib.request.urlopen(call, timeout=5) as answer:  # noqa: S310
            return dict(json.loads(answer.read())["replication"])

    deadline = time.monotonic() + 20
    while (status := replication())["passes"] == 0:
        assert time.monotonic() < deadline, "no replication pass in 20 s"
        time.sleep(0.1)
    not_here = {entry["name"]: entry for entry in status["not_replicated"]}  # type: ignore[attr-defined]
    assert not_here["missing.mp4"]["reason"].endswith(NOT_IN_BUCKET)
    assert len(status["skipped"]) == 1  # type: ignore[arg-type]
    # Without the token: counts, no clip's name (review 16b, finding 2).
    counted = replication({})
    assert counted["not_replicated"] == len(not_here) and counted["skipped"] == 1
    assert (
        "missing.mp4" not in json.dumps(counted) and counted["clips_here"] == status["clips_here"]
    )
    assert daemon.stop() == 0
