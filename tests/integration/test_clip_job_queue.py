"""The clip job queue in this process, on segments a real daemon recorded, under the
slow-callback guard (nothing it does holds the event loop 0.05 s): a job pauses its worker
(SIGSTOP) while the box runs hot and finishes once it cools, into a real clip cache; retention
keeps the segments a queued job needs; a segment deleted anyway fails the job with the reason; a
full disk fails it and leaves nothing.

The thermal reading is the seam: a box cannot be made hot here, so the test sets the level the
governor would report."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client import CollectorRegistry

from edged.cache.store import AssetStore
from edged.clips.jobs import ClipJobs, ClipOutlets, ClipSettings, FinishedClip
from edged.clips.jobstate import ClipRequest, Load
from edged.clips.plan import ClipRefused
from edged.clips.process import CutRun
from edged.config import StorageConfig
from edged.fileio import file_sha256
from edged.media.retention_worker import RetentionWorker
from edged.metrics import ClipJobMetrics, StreamMetrics
from edged.supervise import Supervisor
from tests.integration.test_clip_cut import GOP, moment, recorded, spec
from tests.support import eventually, eventually_in_thread

__all__ = ["recorded"]  # fixture

pytestmark = pytest.mark.integration


@dataclass
class Box:
    """The thermal level the governor would report, and frames dropped at encode."""

    thermal_level: int = 0
    drops: int = 0
    publish_failures: int = 0  # the upload queue raises this many times (an unexpected error)
    uploaded: set[str] = field(default_factory=set)  # files the upload queue sent and verified
    offered: list[tuple[int, str]] = field(default_factory=list)  # (inode, sha256) per attempt

    def is_uploaded(self, path: str) -> bool:
        return path in self.uploaded

    def load(self) -> Load:
        return Load(self.thermal_level, self.drops)


@dataclass
class Queue:
    jobs: ClipJobs
    box: Box
    store: AssetStore
    published: list[FinishedClip]
    spool: Path


@pytest.fixture
async def queue(recorded: list[dict[str, Any]], tmp_path: Path) -> AsyncIterator[Queue]:
    spool = tmp_path / "data" / "spool" / "test-pattern"
    spool.mkdir(parents=True)
    for sidecar in recorded:
        shutil.copy(sidecar["path"], spool)
        (spool / Path(sidecar["path"]).with_suffix(".json").name).write_text(json.dumps(sidecar))
    box, published = Box(), []
    store = AssetStore(tmp_path / "data" / "cache", 1 << 30)

    async def publish(clip: FinishedClip) -> None:
        box.offered.append((clip.path.stat().st_ino, clip.sha256))
        if box.publish_failures:
            box.publish_failures -= 1
            raise RuntimeError("the upload queue broke")
        published.append(clip)

    settings = ClipSettings(max_seconds=30, gop_seconds=GOP, segment_seconds=2.0)
    outlets = ClipOutlets(
        shelf=store, publish=publish, identity=lambda: {"node": "box"}, uploaded=box.is_uploaded
    )
    jobs = ClipJobs(
        tmp_path / "data", settings, ClipJobMetrics(CollectorRegistry()), outlets, box.load
    )
    await jobs.open()
    supervisor = Supervisor(None)
    supervisor.spawn("clip-jobs", jobs.run)
    try:
        yield Queue(jobs, box, store, published, spool.parent)
    finally:
        await supervisor.stop()
        await jobs.close()


def workers() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if "edged.clips.worker" in " ".join(child.cmdline())
    ]


async def state(queue: Queue, job: int) -> dict[str, Any]:
    found = await queue.jobs.job(job)
    assert found is not None
    return found


async def job_until(
    queue: Queue, job: int, condition: Callable[[dict[str, Any]], bool], limit: float = 60.0
) -> dict[str, Any]:
    """The job once `condition` holds for it; fails after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition(found := await state(queue, job)):
        if time.monotonic() > deadline:
            raise AssertionError(f"clip job {job}: not so within {limit} s: {found}")
        await asyncio.sleep(0.05)
    return found


async def test_a_job_pauses_while_the_box_runs_hot_and_finishes_when_it_cools(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    start, end = moment(recorded[0], "start") + 0.1, moment(recorded[2], "end") - 0.1
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end, variants=("vertical",)))

    def under_way(found: dict[str, Any]) -> bool:
        assert found["state"] != "done", "the cut ended before the box ran hot"
        return found["state"] == "running" and found["progress"] > 0

    await job_until(queue, job["id"], under_way)
    queue.box.thermal_level = 1
    paused = await job_until(queue, job["id"], lambda found: found["state"] == "paused")
    assert paused["reason"] == "the box runs hot (thermal level 1)"
    (worker,) = workers()
    await eventually_in_thread(lambda: worker.status() == psutil.STATUS_STOPPED, 10, "SIGSTOP")

    queue.box.thermal_level = 0
    done = await job_until(queue, job["id"], lambda found: found["state"] in ("done", "failed"))
    assert done["state"] == "done", done
    (name,) = done["clips"]
    asset = queue.store.get(name)
    assert asset is not None
    assert (asset.width, asset.height) == (240, 426)
    (clip,) = queue.published
    assert clip.name == name
    assert json.loads(clip.sidecar.read_text())["sha256"] == clip.sha256 == file_sha256(clip.path)

    assert await asyncio.to_thread(queue.jobs.tidy) == []  # in the cache, not yet uploaded
    queue.box.uploaded |= {str(clip.path), str(clip.sidecar)}
    assert await asyncio.to_thread(queue.jobs.tidy) == [name]  # delivered: clips/out lets go
    assert await asyncio.to_thread(lambda: list(queue.jobs.out.iterdir())) == []
    assert queue.store.get(name) is not None  # the cache's copy stays


async def test_the_queue_is_bounded(tmp_path: Path, recorded: list[dict[str, Any]]) -> None:
    spool = tmp_path / "data" / "spool" / "test-pattern"
    spool.mkdir(parents=True)
    for sidecar in recorded:
        shutil.copy(sidecar["path"], spool)
        (spool / Path(sidecar["path"]).with_suffix(".json").name).write_text(json.dumps(sidecar))
    settings = ClipSettings(max_seconds=30, gop_seconds=GOP, segment_seconds=2.0, max_pending=2)
    jobs = ClipJobs(
        tmp_path / "data", settings, ClipJobMetrics(CollectorRegistry()), ClipOutlets(), Box().load
    )
    await jobs.open()  # not run: the jobs stay queued
    try:
        start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 0.5
        for _ in range(2):
            await jobs.submit(ClipRequest("test-pattern", start, end))
        with pytest.raises(ClipRefused, match=r"^the clip queue is full \(2 jobs waiting\)"):
            await jobs.submit(ClipRequest("test-pattern", start, end))
        assert len(await jobs.jobs()) == 2
    finally:
        await jobs.close()


async def test_retention_keeps_a_queued_jobs_segments_and_a_deleted_one_fails_the_job(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    queue.box.thermal_level = 2  # the queue waits
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 1.0
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end))
    needed = sorted(queue.jobs.needed_paths())
    assert [Path(path).name for path in needed] == [
        Path(recorded[0]["path"]).name,
        Path(recorded[1]["path"]).name,
    ]

    class Ledger:
        def is_done(self, path: str) -> bool:
            return True  # uploaded: retention may delete any of them

        def knows(self, path: str) -> bool:
            return True

    class Streams:
        recording = True

        def set_recording(self, recording: bool) -> None:
            self.recording = recording

    recordings = await asyncio.to_thread(lambda: list((queue.spool / "test-pattern").glob("*.mp4")))
    sizes = {str(path): path.stat().st_size for path in recordings}
    others = sorted(path for path in sizes if path not in needed)
    assert others

    def retention(floor: int) -> RetentionWorker:
        worker = RetentionWorker(
            queue.spool,
            StorageConfig(min_free_bytes=floor),
            Ledger(),
            StreamMetrics(CollectorRegistry()),
            streams,
            free_bytes=lambda: 0,
        )
        worker.keep = queue.jobs.needed_paths
        return worker

    streams = Streams()
    decision = await retention(sum(sizes[path] for path in others)).apply()
    assert sorted(victim.path for victim in decision.delete) == others  # the others suffice
    assert not decision.stop_recording
    assert await asyncio.to_thread(lambda: all(Path(path).exists() for path in needed))

    # Still below the floor with only the job's segments left: they go (oldest first) rather
    # than recording stopping; the job fails saying why.
    decision = await retention(sizes[needed[0]]).apply()
    assert [victim.path for victim in decision.delete] == [needed[0]]
    assert not decision.stop_recording and streams.recording
    queue.box.thermal_level = 0
    latest = await job_until(queue, job["id"], lambda found: found["state"] != "queued")
    assert latest["state"] == "failed"
    assert latest["reason"].startswith(
        f"source segment {Path(needed[0]).name} was deleted before the cut (retention frees"
    )
    assert queue.store.assets() == []
    await eventually(lambda: not queue.jobs.needed_paths(), 10, "the failed job's segments let go")


async def test_a_full_disk_fails_the_job_and_leaves_nothing_visible(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    """A file size limit stands in for the full disk: the worker, started under it, cannot write
    past 256 KiB (EFBIG); the limit is this process's only until the worker has started."""
    queue.box.thermal_level = 1  # held until the limit is set
    start, end = moment(recorded[0], "start"), moment(recorded[2], "start")
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        queue.box.thermal_level = 0
        await job_until(queue, job["id"], lambda found: found["state"] != "queued")
        await eventually(lambda: bool(workers()) or not queue.jobs.needed_paths(), 10, "a worker")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    failed = await job_until(queue, job["id"], lambda found: found["state"] in ("done", "failed"))
    assert failed["state"] == "failed"
    assert failed["reason"] == "the disk is full: the clip could not be written"
    assert await asyncio.to_thread(lambda: list(queue.jobs.out.iterdir())) == []
    assert queue.store.assets() == []
    assert queue.published == []


async def test_a_job_an_unexpected_error_left_running_is_cut_again(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    """The supervised loop restarts after an error nobody expected; the job it was running is
    queued again and finishes (it stayed 'running' forever before)."""
    queue.box.publish_failures = 1
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 0.5
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end))
    done = await job_until(queue, job["id"], lambda found: found["state"] in ("done", "failed"))
    assert done["state"] == "done", done
    assert [clip.name for clip in queue.published] == done["clips"]
    # The clip was finished before the error: delivered again as it was, never cut a second time
    # (a second cut, signed anew, would go upstream under the same key with other bytes).
    first, again = queue.box.offered
    assert first == again


async def test_an_error_that_comes_back_fails_the_job_after_three_attempts(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    queue.box.publish_failures = 100
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 0.5
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end))
    failed = await job_until(queue, job["id"], lambda found: found["state"] in ("done", "failed"))
    assert failed["state"] == "failed"
    assert failed["reason"] == "failed after 3 attempts (RuntimeError)"
    assert len(queue.box.offered) == 3 and queue.published == []


async def test_a_failed_cut_gives_its_reason_without_a_directory(
    queue: Queue, recorded: list[dict[str, Any]]
) -> None:
    queue.box.thermal_level = 1  # held while its source is spoiled
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 0.5
    job = await queue.jobs.submit(ClipRequest("test-pattern", start, end))
    first = sorted(queue.jobs.needed_paths())[0]
    await asyncio.to_thread(Path(first).write_bytes, b"not a video at all" * 1000)
    queue.box.thermal_level = 0
    failed = await job_until(queue, job["id"], lambda found: found["state"] in ("done", "failed"))
    assert failed["state"] == "failed"
    assert Path(first).name in failed["reason"]
    assert "/" not in failed["reason"], failed["reason"]
    assert await asyncio.to_thread(lambda: list(queue.jobs.out.iterdir())) == []


async def test_a_cut_paused_before_its_worker_started_starts_stopped(
    tmp_path: Path, recorded: list[dict[str, Any]]
) -> None:
    """The gate may close in the half second before the worker exists: it must not run."""
    start, end = moment(recorded[0], "start") + 0.2, moment(recorded[1], "start") + 0.2
    run = CutRun(spec(recorded[:2], start, end, tmp_path / "clip.mp4"), lambda _: None)
    run.pause()
    task = asyncio.ensure_future(run.run())
    try:
        await eventually(lambda: bool(workers()), 10, "the worker started")
        (worker,) = workers()
        await eventually_in_thread(lambda: worker.status() == psutil.STATUS_STOPPED, 10, "stopped")
        run.resume()
        async with asyncio.timeout(60):
            result = await task
        assert result["frames"] > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class SlowShelf:
    """The real clip cache, its `add` held until the test lets it go (a slow disk)."""

    def __init__(self, store: AssetStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()
        self.added: list[str] = []

    @property
    def facts(self) -> Any:
        return self.store.facts

    def get(self, name: str) -> Any:
        return self.store.get(name)

    def add(self, source: Path, name: str, *, pin: bool, origin: str) -> Any:
        self.entered.set()
        self.release.wait(60)
        asset = self.store.add(source, name, pin=pin, origin=origin)
        self.added.append(name)
        return asset


async def test_a_stop_waits_for_the_clip_being_handed_to_the_cache(
    tmp_path: Path, recorded: list[dict[str, Any]]
) -> None:
    spool = tmp_path / "data" / "spool" / "test-pattern"
    spool.mkdir(parents=True)
    for sidecar in recorded:
        shutil.copy(sidecar["path"], spool)
        (spool / Path(sidecar["path"]).with_suffix(".json").name).write_text(json.dumps(sidecar))
    shelf = SlowShelf(AssetStore(tmp_path / "data" / "cache", 1 << 30))
    settings = ClipSettings(max_seconds=30, gop_seconds=GOP, segment_seconds=2.0)
    jobs = ClipJobs(
        tmp_path / "data",
        settings,
        ClipJobMetrics(CollectorRegistry()),
        ClipOutlets(shelf=shelf),
        Box().load,
    )
    await jobs.open()
    supervisor = Supervisor(None)
    supervisor.spawn("clip-jobs", jobs.run)
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 0.5
    try:
        await jobs.submit(ClipRequest("test-pattern", start, end))
        await eventually_in_thread(shelf.entered.is_set, 60, "the clip on its way to the cache")
        letting_go = threading.Timer(1.0, shelf.release.set)  # while the stop is under way
        letting_go.start()
        await supervisor.stop()
        assert len(shelf.added) == 1  # the stop waited for it: nothing runs on after it
    finally:
        shelf.release.set()
        await supervisor.stop()
        await jobs.close()
