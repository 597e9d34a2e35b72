"""Clip jobs: a queue that survives restarts, run one at a time in the worker process, paused
while the live streams need the box, each finished clip handed to the clip cache and the upload
queue with its sidecar.

`submit` refuses what cannot be cut (ClipRefused: an HTTP 422) before anything is queued; a job
whose range reaches into the segment being recorded waits for it to close. `run()` is the
supervised loop: it takes the oldest job whose segments are ready, cuts each variant, and
between its steps asks the pause gate. Blocking work (the journal, the spool, the cache, the
sidecar) goes to threads; the cut itself to the worker process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edged.clips.jobstate import (
    ClipRequest,
    JobEvent,
    JobState,
    Load,
    PauseGate,
    eta_seconds,
    job_progress,
)
from edged.clips.journal import Job, JobJournal, Source
from edged.clips.plan import (
    ClipRefused,
    Recorded,
    Span,
    available,
    check_range,
    check_recorded,
    format_utc,
    segments_for,
)
from edged.clips.process import CutFailed, CutRun
from edged.clips.spool import open_segment, recorded_segments
from edged.clips.worker import CutSpec, FinishSpec
from edged.errors import EdgedError
from edged.fileio import file_sha256, write_atomically
from edged.metrics import ClipJobMetrics

logger = logging.getLogger(__name__)

CLIPS_DIR = "clips"  # in the data dir: the journal and the finished clips (out/)
GATE_SECONDS = 0.5  # how often a running job asks the pause gate
IDLE_SECONDS = 2.0  # how often an idle queue looks again (segments close, the gate opens)
PROGRESS_SAVE_SECONDS = 2.0
FUTURE_SLACK_SECONDS = 1.0
STREAM_IN_NAME = 64  # characters of the stream's name in a clip's (at most 110 in all)
TIDY_SECONDS = 30.0  # how often finished clips that are delivered leave clips/out
DELIVERY_GRACE_SECONDS = 30.0  # a stop waits this long for a clip being handed to the cache
MAX_ATTEMPTS = 3  # starts of one job (a crash, an unexpected error) before it fails


class FactPatcher(Protocol):
    def patch(self, name: str, fields: Mapping[str, Any]) -> Any: ...


class ClipShelf(Protocol):
    """The clip cache as clips use it (AssetStore is one); blocking: called in threads."""

    def add(self, source: Path, name: str, *, pin: bool, origin: str) -> Any: ...

    def get(self, name: str) -> Any: ...

    @property
    def facts(self) -> FactPatcher: ...


@dataclass(frozen=True)
class FinishedClip:
    """A clip ready to go upstream: its file, its sidecar, its name and its release."""

    name: str
    path: Path
    sidecar: Path
    sha256: str
    publish_at: float | None


@dataclass
class ClipOutlets:
    """Where finished clips go; None: that outlet is not running. `signer`: the box's
    certificate and key files, which the worker signs each finished clip with."""

    shelf: ClipShelf | None = None
    publish: Callable[[FinishedClip], Awaitable[Any]] | None = None
    signer: tuple[Path, Path] | None = None
    identity: Callable[[], Mapping[str, str]] = dict  # node, event
    # Whether the upload queue has sent a file and verified it (blocking); None: nothing to wait
    # for. A finished clip leaves clips/out once it is in the cache (if any) and uploaded.
    uploaded: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class ClipSettings:
    max_seconds: float = 180.0
    gop_seconds: float = 1.0
    segment_seconds: float = 60.0
    encoders: tuple[str, ...] = ()
    vertical_mode: str = "fill"
    max_pending: int = 50  # jobs queued or running at once; more are refused


@dataclass
class LiveJob:
    """What only the running job knows: its progress now, its running time, why it waits."""

    progress: float = 0.0
    running_seconds: float = 0.0
    paused: str | None = None
    saved_at: float = field(default_factory=time.monotonic)


def clip_name(job: Job, variant: str) -> str:
    """`clip<id>-<stream>-<UTC start>-<variant>`: an asset name and an object key's file. A
    stream name over STREAM_IN_NAME characters is cut short with a hash of the whole name, so
    neither the variant nor the difference between two long names is ever lost."""
    stamp = datetime.fromtimestamp(job.start, UTC).strftime("%Y%m%dT%H%M%SZ")
    stream = job.stream
    if len(stream) > STREAM_IN_NAME:
        digest = hashlib.sha256(stream.encode()).hexdigest()[:8]
        stream = f"{stream[: STREAM_IN_NAME - 9]}-{digest}"
    return f"clip{job.id}-{stream}-{stamp}-{variant}"


def describe(job: Job, live: LiveJob | None, now: float) -> dict[str, Any]:
    """A job as the API shows it (times RFC 3339 UTC)."""
    progress = live.progress if live is not None else job.progress
    running = live.running_seconds if live is not None else job.running_seconds
    active = job.state in (JobState.RUNNING, JobState.PAUSED)
    eta = eta_seconds(progress, running) if active else None
    return {
        "id": job.id,
        "stream": job.stream,
        "start": format_utc(job.start),
        "end": format_utc(job.end),
        "title": job.title,
        "variants": list(job.variants),
        "mode": job.mode,
        "x_offset": job.x_offset,
        "publish_at": format_utc(job.publish_at) if job.publish_at is not None else None,
        "state": job.state.value,
        "reason": (live.paused if live is not None and live.paused else job.reason) or None,
        "progress": round(progress, 4),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "created": format_utc(job.created),
        "clips": list(job.outputs),
        "segments": [Path(path).name for path, *_ in job.sources],
    }


class ClipJobs:
    """The clip job queue of one data dir."""

    def __init__(
        self,
        data_dir: Path,
        settings: ClipSettings,
        metrics: ClipJobMetrics,
        outlets: ClipOutlets,
        load: Callable[[], Load],
    ) -> None:
        self.root = data_dir / CLIPS_DIR
        self.out = self.root / "out"
        self._spool = data_dir / "spool"
        self._settings = settings
        self._metrics = metrics
        self._outlets = outlets
        self._load = load
        self._gate = PauseGate()
        self._journal: JobJournal | None = None
        self._wake = asyncio.Event()
        self._live: dict[int, LiveJob] = {}
        self._needed: frozenset[str] = frozenset()  # read by retention from its thread

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the journal and put back in the queue what a stop interrupted."""
        self._journal = await asyncio.to_thread(self._open)
        await self._refresh()

    def _open(self) -> JobJournal:
        self.out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stray in self.out.glob(".*"):  # a cut, a finish or a sidecar a crash interrupted
            stray.unlink(missing_ok=True)
        journal = JobJournal(self.root / "jobs.sqlite")
        for job in journal.restart_interrupted(time.time()):
            logger.info("clip job %d: queued again (edged stopped while it ran)", job.id)
        return journal

    async def close(self) -> None:
        if self._journal is not None:
            await asyncio.to_thread(self._journal.close)
            self._journal = None

    @property
    def journal(self) -> JobJournal:
        if self._journal is None:
            raise RuntimeError("clip jobs are not open")
        return self._journal

    @property
    def default_mode(self) -> str:
        return self._settings.vertical_mode

    def needed_paths(self) -> frozenset[str]:
        """The segments queued and running jobs cut from: retention keeps them."""
        return self._needed

    async def _refresh(self) -> None:
        """The gauges and the segments retention keeps, from the journal."""
        counts, pending = await asyncio.to_thread(
            lambda: (self.journal.counts(), self.journal.pending())
        )
        for state, count in counts.items():
            self._metrics.jobs.labels(state.value).set(count)
        self._needed = frozenset(path for job in pending for path, *_ in job.sources)

    # -- what the API asks ---------------------------------------------------------------------

    async def submit(self, request: ClipRequest) -> dict[str, Any]:
        """Queue a job; ClipRefused (with what is recorded) when its range cannot be cut."""
        now = time.time()
        check_range(request.start, request.end, self._settings.max_seconds)
        waiting = len(await asyncio.to_thread(self.journal.pending))
        if waiting >= self._settings.max_pending:
            raise ClipRefused(
                f"the clip queue is full ({waiting} jobs waiting): try again once some finish"
            )
        if request.end > now + FUTURE_SLACK_SECONDS:
            raise ClipRefused(f"the end ({format_utc(request.end)}) is in the future")
        segments, recording = await asyncio.to_thread(self._recorded, request.stream, now)
        spans = [Span(seg.start, seg.end) for seg in segments]
        check_recorded(request.start, request.end, available([*spans, *recording]))
        sources = _sources(segments_for(segments, request.start, request.end))
        job = await asyncio.to_thread(self.journal.add, request, sources, now)
        logger.info(
            "clip job %d queued: %s %s to %s, %s",
            job.id,
            job.stream,
            format_utc(job.start),
            format_utc(job.end),
            "+".join(job.variants),
        )
        await self._refresh()
        self._wake.set()
        return describe(job, None, now)

    def _recorded(self, stream: str, now: float) -> tuple[list[Recorded], list[Span]]:
        open_span = open_segment(self._spool, stream, now)
        return recorded_segments(self._spool, stream), [open_span] if open_span else []

    async def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(self.journal.recent, limit)
        now = time.time()
        return [describe(job, self._live.get(job.id), now) for job in found]

    async def job(self, job_id: int) -> dict[str, Any] | None:
        found = await asyncio.to_thread(self.journal.get, job_id)
        return describe(found, self._live.get(job_id), time.time()) if found else None

    # -- the queue -----------------------------------------------------------------------------

    async def run(self) -> None:
        """The supervised loop: the next ready job, cut; else wait for a wake or a while. A job
        an unexpected error left running (the loop restarted) is queued again first."""
        for job in await asyncio.to_thread(self.journal.restart_interrupted, time.time()):
            logger.info("clip job %d: queued again", job.id)
        tidied = -TIDY_SECONDS
        while True:
            self._wake.clear()
            ready = await self._next_ready()
            if ready is None:
                if time.monotonic() - tidied >= TIDY_SECONDS:
                    tidied = time.monotonic()
                    await asyncio.to_thread(self.tidy)
                try:
                    async with asyncio.timeout(IDLE_SECONDS):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            await self._run_job(*ready)

    async def _next_ready(self) -> tuple[Job, tuple[Recorded, ...]] | None:
        """The oldest queued job whose segments are all closed, while the gate is open; a job
        whose range will never be recorded fails here."""
        if self._gate.reason(self._load(), time.monotonic()) is not None:
            return None
        for job in await asyncio.to_thread(self.journal.pending):
            if job.state is not JobState.QUEUED:
                continue
            if job.attempts >= MAX_ATTEMPTS:  # edged stopped (or crashed) during each of them
                await self._fail(job, f"failed after {job.attempts} attempts ({job.reason})")
                continue
            segments, recording = await asyncio.to_thread(self._recorded, job.stream, time.time())
            if gone := _missing(job, segments):
                await self._fail(
                    job,
                    f"source segment {gone} was deleted before the cut (retention frees the disk "
                    "when it is below its floor, even of segments queued jobs need)",
                )
                continue
            chosen = segments_for(segments, job.start, job.end)
            try:
                check_recorded(job.start, job.end, available(Span(s.start, s.end) for s in chosen))
            except ClipRefused as refused:
                if self._may_still_close(job, recording):
                    continue
                await self._fail(job, refused.reason)
                continue
            return job, chosen
        return None

    def _may_still_close(self, job: Job, recording: list[Span]) -> bool:
        """Whether the segment being recorded may still cover the job's range once it closes."""
        wait = self._settings.segment_seconds + 2 * self._settings.gop_seconds + 10
        return bool(recording) and time.time() < job.end + wait

    async def _run_job(self, job: Job, segments: tuple[Recorded, ...]) -> None:
        live = self._live[job.id] = LiveJob(progress=0.0)
        await asyncio.to_thread(self.journal.set_sources, job.id, _sources(segments))
        job = await asyncio.to_thread(self.journal.apply, job.id, JobEvent.START, time.time())
        await self._refresh()
        logger.info("clip job %d running: %s", job.id, "+".join(job.variants))
        try:
            for index, variant in enumerate(job.variants):
                name = clip_name(job, variant)
                if name in job.outputs:
                    continue  # finished before a restart
                await self._variant(job, index, variant, segments, live)
                job = await asyncio.to_thread(self.journal.add_output, job.id, name)
        except CutFailed as failed:
            await asyncio.to_thread(self._discard, job)
            await self._fail(job, short_reason(failed), live)
            return
        except (OSError, ValueError, EdgedError) as error:  # cache, signing, a full disk
            await asyncio.to_thread(self._discard, job)
            await self._fail(job, short_reason(error), live)
            return
        except Exception as error:
            await self._unexpected(job, error, live)
            return
        finally:
            self._live.pop(job.id, None)
        await self._finish(job, live)

    async def _variant(
        self, job: Job, index: int, variant: str, segments: tuple[Recorded, ...], live: LiveJob
    ) -> None:
        """Cut, finish and deliver one variant; one a stop interrupted after its sidecar was
        written is delivered again as it is (the same signed bytes, never a second cut)."""
        name = clip_name(job, variant)
        delivered = await asyncio.to_thread(self._delivered_before, job, name)
        if delivered is not None:
            logger.info("clip job %d: %s was finished before a stop; delivered again", job.id, name)
            await asyncio.to_thread(self._reshelve, delivered)
            if self._outlets.publish is not None:
                await self._outlets.publish(delivered)
            return
        result = await self._cut(job, variant, segments, live, index)
        result["device"] = segments[0].device if segments else ""
        await self._deliver(job, variant, result, live)

    async def _unexpected(self, job: Job, error: Exception, live: LiveJob) -> None:
        """An error nobody expected: the job starts again, up to MAX_ATTEMPTS times in all."""
        kind = type(error).__name__
        logger.error(
            "clip job %d: unexpected %s (attempt %d of %d)",
            job.id,
            kind,
            job.attempts,
            MAX_ATTEMPTS,
            exc_info=error,
        )
        await asyncio.to_thread(self._drop_hidden, job)
        if job.attempts >= MAX_ATTEMPTS:
            await self._fail(job, f"failed after {job.attempts} attempts ({kind})", live)
            return
        await asyncio.to_thread(
            lambda: self.journal.apply(
                job.id, JobEvent.RESTART, time.time(), reason=f"queued again after {kind}"
            )
        )
        await self._refresh()

    async def _finish(self, job: Job, live: LiveJob) -> None:
        done = await asyncio.to_thread(
            lambda: self.journal.apply(
                job.id, JobEvent.FINISH, time.time(), running_seconds=live.running_seconds
            )
        )
        if done.started is not None and done.finished is not None:
            self._metrics.seconds.observe(done.finished - done.started)
        logger.info("clip job %d done: %s", job.id, ", ".join(done.outputs))
        await self._refresh()

    async def _fail(self, job: Job, reason: str, live: LiveJob | None = None) -> None:
        running = live.running_seconds if live is not None else None
        await asyncio.to_thread(
            lambda: self.journal.apply(
                job.id, JobEvent.FAIL, time.time(), reason=reason, running_seconds=running
            )
        )
        logger.warning("clip job %d failed: %s", job.id, reason)
        await self._refresh()

    # -- one variant ---------------------------------------------------------------------------

    async def _cut(
        self, job: Job, variant: str, segments: tuple[Recorded, ...], live: LiveJob, index: int
    ) -> dict[str, Any]:
        spec = CutSpec(
            variant,
            tuple((seg.path, seg.start) for seg in segments),
            job.start,
            job.end,
            str(self.out / f".{clip_name(job, variant)}.cut.mp4"),  # hidden until finished
            mode=job.mode,
            x_offset=job.x_offset,
            encoders=self._settings.encoders,
        )

        def progress(fraction: float) -> None:
            live.progress = job_progress(index, len(job.variants), fraction)

        return await self._in_worker(job, CutRun(spec, progress), live)

    async def _in_worker(self, job: Job, run: CutRun, live: LiveJob) -> dict[str, Any]:
        """One step in the worker process, paused and resumed by the gate; its result."""
        task = asyncio.ensure_future(run.run())
        try:
            await self._watch(job, run, task, live)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return task.result()

    async def _watch(self, job: Job, run: CutRun, task: asyncio.Future[Any], live: LiveJob) -> None:
        """Until the cut ends: pause and resume it by the gate, count its running time, save
        its progress now and then."""
        last = time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=GATE_SECONDS)
            now = time.monotonic()
            if not run.paused:
                live.running_seconds += now - last
            last = now
            reason = self._gate.reason(self._load(), now)
            if reason is not None and not run.paused and not task.done():
                run.pause()
                await self._note_pause(job, JobEvent.PAUSE, reason, live)
            elif reason is None and run.paused:
                run.resume()
                await self._note_pause(job, JobEvent.RESUME, "", live)
            if now - live.saved_at >= PROGRESS_SAVE_SECONDS:
                live.saved_at = now
                await asyncio.to_thread(
                    self.journal.note_progress, job.id, live.progress, live.running_seconds
                )

    async def _note_pause(self, job: Job, event: JobEvent, reason: str, live: LiveJob) -> None:
        live.paused = reason or None
        await asyncio.to_thread(
            lambda: self.journal.apply(
                job.id, event, time.time(), reason=reason, running_seconds=live.running_seconds
            )
        )
        if event is JobEvent.PAUSE:
            logger.info("clip job %d paused: %s", job.id, reason)
        else:
            logger.info("clip job %d resumed", job.id)
        await self._refresh()

    async def _deliver(
        self, job: Job, variant: str, result: Mapping[str, Any], live: LiveJob
    ) -> None:
        """The cut, finished in the worker (prepared for the cache, then signed last: the file
        served, uploaded and described is the signed one), its sidecar beside it, then into the
        cache (its facts first: never shown before its publish_at) and the upload queue."""
        name = clip_name(job, variant)
        path = self.out / f"{name}.mp4"
        sidecar = clip_sidecar(job, variant, result, dict(self._outlets.identity()))
        cert, key = self._outlets.signer or ("", "")
        spec = FinishSpec(
            str(self.out / f".{name}.cut.mp4"),
            str(path),
            sidecar,
            encoders=self._settings.encoders,
            cert_file=str(cert),
            key_file=str(key),
        )
        made = await self._in_worker(job, CutRun(spec, lambda _: None), live)
        await self._gate_open(job, live)  # the cache's copy runs in the daemon: not when busy
        finished = await _finish_even_if_stopped(
            asyncio.to_thread(self._shelve, job, name, sidecar, made)
        )
        if self._outlets.publish is not None:
            await self._outlets.publish(finished)

    async def _gate_open(self, job: Job, live: LiveJob) -> None:
        """Until the gate lets jobs run (noted as a pause while it does not)."""
        while (reason := self._gate.reason(self._load(), time.monotonic())) is not None:
            if live.paused is None:
                await self._note_pause(job, JobEvent.PAUSE, reason, live)
            await asyncio.sleep(GATE_SECONDS)
        if live.paused is not None:
            await self._note_pause(job, JobEvent.RESUME, "", live)

    def tidy(self) -> list[str]:
        """Delete the finished clips of clips/out that are delivered: in the cache and, with an
        upstream, uploaded and verified with their sidecars (blocking); their names."""
        shelf, uploaded = self._outlets.shelf, self._outlets.uploaded
        if shelf is None and uploaded is None:
            return []  # clips/out holds the only copy
        removed = []
        for sidecar in sorted(self.out.glob("*.json")):
            video = sidecar.with_suffix(".mp4")
            if shelf is not None and shelf.get(video.stem) is None:
                continue
            if uploaded is not None and not (uploaded(str(video)) and uploaded(str(sidecar))):
                continue
            video.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            removed.append(video.stem)
        if removed:
            logger.info("clips/out: %d delivered clip(s) removed", len(removed))
        return removed

    def _delivered_before(self, job: Job, name: str) -> FinishedClip | None:
        """A variant finished and signed before a stop (its sidecar is written last, with the
        sha256 of the file beside it), or None (blocking: hashes the clip)."""
        path = self.out / f"{name}.mp4"
        try:
            document = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            whole = isinstance(document, dict) and document.get("sha256") == file_sha256(path)
        except (OSError, ValueError):
            return None
        if not whole:
            return None
        sidecar = path.with_suffix(".json")
        return FinishedClip(name, path, sidecar, document["sha256"], job.publish_at)

    def _reshelve(self, clip: FinishedClip) -> None:
        shelf = self._outlets.shelf
        if shelf is not None and shelf.get(clip.name) is None:
            shelf.add(clip.path, clip.name, pin=False, origin="clip")

    def _drop_hidden(self, job: Job) -> None:
        for variant in job.variants:
            (self.out / f".{clip_name(job, variant)}.cut.mp4").unlink(missing_ok=True)

    def _discard(self, job: Job) -> None:
        """The files of the variants not finished (a sidecar the disk had no room for)."""
        for variant in job.variants:
            name = clip_name(job, variant)
            if name not in job.outputs:
                hidden = self.out / f".{name}.cut.mp4"
                for path in (self.out / f"{name}.mp4", self.out / f"{name}.json", hidden):
                    path.unlink(missing_ok=True)

    def _shelve(
        self, job: Job, name: str, sidecar: Mapping[str, Any], made: Mapping[str, Any]
    ) -> FinishedClip:
        path = self.out / f"{name}.mp4"
        sha256 = str(made["sha256"])
        document = {**sidecar, "file": path.name, "sha256": sha256, "size": int(made["size"])}
        write_atomically(path.with_suffix(".json"), json.dumps(document, indent=2).encode())
        shelf = self._outlets.shelf
        if shelf is not None:
            fields: dict[str, Any] = {"publish_at": document["publish_at"]}
            if job.title:
                fields["title"] = job.title
            shelf.facts.patch(name, fields)
            shelf.add(path, name, pin=False, origin="clip")
        return FinishedClip(name, path, path.with_suffix(".json"), sha256, job.publish_at)


def clip_sidecar(
    job: Job, variant: str, result: Mapping[str, Any], identity: Mapping[str, str]
) -> dict[str, Any]:
    """What a clip's sidecar JSON says of it (beside its sha256 and size)."""
    return {
        "job": job.id,
        "variant": variant,
        "mode": job.mode if variant == "vertical" else None,
        "title": job.title,
        "publish_at": format_utc(job.publish_at) if job.publish_at is not None else None,
        "stream": job.stream,
        "device": result.get("device", ""),
        "node": identity.get("node", ""),
        "event": identity.get("event", ""),
        "requested": {"start": format_utc(job.start), "end": format_utc(job.end)},
        "start": format_utc(float(result["start"])),
        "end": format_utc(float(result["end"])),
        "precision": (
            "starts at the keyframe at or before the requested start (at most one GOP early)"
            if variant == "original"
            else "frame-accurate"
        ),
        "encoder": result["encoder"],
        "width": result["width"],
        "height": result["height"],
        "frames": result["frames"],
        "sources": [
            {
                "file": Path(path).name,
                "start": format_utc(start),
                "end": format_utc(end),
                "sha256": h,
            }
            for path, start, end, h in job.sources
        ],
    }


async def _finish_even_if_stopped(work: Awaitable[FinishedClip]) -> FinishedClip:
    """`work` (a thread handing a clip to the cache): a stop meanwhile waits for it, up to
    DELIVERY_GRACE_SECONDS, so it never runs on into a closed journal or a store shutting down."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=DELIVERY_GRACE_SECONDS)
        raise


def _missing(job: Job, segments: list[Recorded]) -> str | None:
    """The name of a segment the job was queued with that is gone from the spool."""
    present = {seg.path for seg in segments}
    return next((Path(path).name for path, *_ in job.sources if path not in present), None)


def _sources(segments: tuple[Recorded, ...] | list[Recorded]) -> list[Source]:
    return [(seg.path, seg.start, seg.end, seg.sha256) for seg in segments]


def short_reason(error: BaseException) -> str:
    """A reason for the crew: the message without directories."""
    text = str(error) if not isinstance(error, OSError) or not error.strerror else error.strerror
    return " ".join(word.rsplit("/", 1)[-1] if "/" in word else word for word in text.split())[:300]
