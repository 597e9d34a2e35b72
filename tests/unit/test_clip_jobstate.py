"""A clip job's pure decisions: the state table over every (state, event), the pause gate, the
ETA, the request's fields; the job journal's restart; the CLI's progress bar."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.ranges import valid_name
from edged.clips.client import bar
from edged.clips.jobs import clip_name, short_reason
from edged.clips.jobstate import (
    TRANSITIONS,
    BadRequest,
    ClipRequest,
    InvalidJobTransition,
    JobEvent,
    JobState,
    Load,
    PauseGate,
    eta_seconds,
    job_progress,
    next_state,
    parse_request,
    parse_time,
)
from edged.clips.journal import SCHEMA, Job, JobJournal
from edged.clips.process import CutFailed

NOW = 1_796_000_000.0


@pytest.mark.parametrize(("state", "event"), list(itertools.product(JobState, JobEvent)))
def test_every_state_and_event(state: JobState, event: JobEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) == TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidJobTransition):
            next_state(state, event)


def test_finished_jobs_stay_finished() -> None:
    for state, event in itertools.product((JobState.DONE, JobState.FAILED), JobEvent):
        assert (state, event) not in TRANSITIONS


def test_the_gate_closes_while_the_box_runs_hot() -> None:
    gate = PauseGate()
    assert gate.reason(Load(0, 0), 0.0) is None
    assert gate.reason(Load(1, 0), 1.0) == "the box runs hot (thermal level 1)"
    assert gate.reason(Load(0, 0), 2.0) is None


def test_the_gate_stays_closed_until_encode_drops_have_stopped_for_a_while() -> None:
    gate = PauseGate(quiet_seconds=10)
    assert gate.reason(Load(0, 5), 0.0) is None  # drops before the first look are history
    assert gate.reason(Load(0, 7), 1.0) == "a live stream dropped frames at encode"
    assert gate.reason(Load(0, 7), 10.9) is not None
    assert gate.reason(Load(0, 7), 11.0) is None
    assert gate.reason(Load(0, 8), 12.0) is not None


@given(st.floats(0.001, 1.0), st.floats(0.1, 1000))
def test_the_eta_is_the_pace_so_far(progress: float, running: float) -> None:
    eta = eta_seconds(progress, running)
    assert eta is not None
    assert eta == pytest.approx(running / progress - running, abs=1e-6)


def test_no_eta_before_progress() -> None:
    assert eta_seconds(0.0, 10) is None
    assert job_progress(1, 2, 0.5) == 0.75
    assert job_progress(0, 1, 2.0) == 1.0


def test_a_request_by_times() -> None:
    body = {
        "stream": "cam-1",
        "start": "2026-11-30T16:00:00Z",
        "end": "2026-11-30T17:00:10+01:00",
        "title": "Opening",
        "variants": ["vertical", "original", "vertical"],
        "mode": "crop",
        "x_offset": 120,
        "publish_at": "2026-12-01T18:00:00Z",
    }
    request = parse_request(body, NOW)
    assert request.end - request.start == 10
    assert request.variants == ("vertical", "original")
    assert (request.mode, request.x_offset, request.title) == ("crop", 120, "Opening")
    assert request.publish_at is not None


def test_a_request_for_the_last_seconds_takes_the_default_mode() -> None:
    request = parse_request({"stream": "cam", "last_seconds": 30}, NOW, default_mode="crop")
    assert request == ClipRequest("cam", NOW - 30, NOW, mode="crop")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "the body must be a JSON object"),
        ({"stream": "../x", "last_seconds": 3}, "stream must name a stream"),
        ({"stream": "c"}, "give start and end"),
        ({"stream": "c", "last_seconds": 3, "start": "x"}, "not both"),
        ({"stream": "c", "last_seconds": True}, "last_seconds must be a number"),
        ({"stream": "c", "last_seconds": 0}, "last_seconds must be over 0"),
        ({"stream": "c", "start": "2026-11-30T16:00:00", "end": "x"}, "needs its offset"),
        ({"stream": "c", "start": "16:00", "end": "x"}, "start must be an RFC 3339 time"),
        ({"stream": "c", "last_seconds": 3, "variants": []}, "variants must be a list"),
        ({"stream": "c", "last_seconds": 3, "variants": ["square"]}, "variant 'square' unknown"),
        ({"stream": "c", "last_seconds": 3, "mode": "stretch"}, "mode must be one of"),
        ({"stream": "c", "last_seconds": 3, "x_offset": -1}, "x_offset must be"),
        ({"stream": "c", "last_seconds": 3, "title": "a\x00b"}, "no control characters"),
        ({"stream": "c", "last_seconds": 3, "title": "t" * 121}, "at most 120"),
        ({"stream": "c", "last_seconds": 3, "publish_at": 5}, "publish_at must be"),
        ({"stream": "c", "last_seconds": 3, "colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_a_malformed_request_names_its_field(body: object, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_request(body, NOW)


def test_the_journal_queues_an_interrupted_job_again_and_keeps_its_finished_clips(
    tmp_path: Path,
) -> None:
    journal = JobJournal(tmp_path / "clips" / "jobs.sqlite")
    request = ClipRequest("cam", NOW, NOW + 5, variants=("original", "vertical"))
    job = journal.add(request, [("/spool/cam/a.mp4", NOW - 1, NOW + 6, "ab")], NOW)
    journal.apply(job.id, JobEvent.START, NOW + 1)
    journal.add_output(job.id, "clip1-original")
    journal.apply(job.id, JobEvent.PAUSE, NOW + 2, reason="hot", running_seconds=1.5)
    journal.close()

    again = JobJournal(tmp_path / "clips" / "jobs.sqlite")
    (restarted,) = again.restart_interrupted(NOW + 10)
    assert restarted.state is JobState.QUEUED
    assert restarted.outputs == ("clip1-original",)
    assert restarted.sources == (("/spool/cam/a.mp4", NOW - 1, NOW + 6, "ab"),)
    assert restarted.started == NOW + 1
    assert again.counts()[JobState.QUEUED] == 1
    assert (tmp_path / "clips").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "clips" / "jobs.sqlite").stat().st_mode & 0o777 == 0o600
    with pytest.raises(InvalidJobTransition):
        again.apply(job.id, JobEvent.FINISH, NOW + 11)


def test_the_progress_bar() -> None:
    job = {"id": 3, "progress": 0.5, "state": "running", "eta_seconds": 12.4, "reason": None}
    assert bar(job, width=10) == "job 3 [#####.....]  50%  running  ETA 12 s"
    paused = {**job, "state": "paused", "eta_seconds": None, "reason": "the box runs hot"}
    assert bar(paused, width=4) == "job 3 [##..]  50%  paused  (the box runs hot)"


def test_the_gate_waits_after_a_recorder_or_live_output_drop_too() -> None:
    gate = PauseGate(quiet_seconds=10)
    assert gate.reason(Load(0, 0, 3), 0.0) is None
    reason = gate.reason(Load(0, 0, 4), 1.0)
    assert reason is not None and reason.startswith("a live stream's recorder or live output")
    assert gate.reason(Load(0, 0, 4), 11.0) is None


def test_drops_back_soon_after_a_resume_double_the_quiet_time_and_calm_halves_it() -> None:
    gate = PauseGate(quiet_seconds=10)
    gate.reason(Load(0, 0), 0.0)
    assert gate.reason(Load(0, 1), 1.0) is not None  # the live side dropped: wait 10 s
    assert gate.reason(Load(0, 1), 11.0) is None  # resumed
    assert gate.reason(Load(0, 2), 13.0) is not None  # back 2 s after the resume: 20 s now
    assert gate.quiet_seconds == 20
    assert gate.reason(Load(0, 2), 32.0) is not None
    assert gate.reason(Load(0, 2), 33.0) is None
    assert gate.reason(Load(0, 3), 40.0) is not None  # again: 40 s
    assert gate.quiet_seconds == 40
    assert gate.reason(Load(0, 3), 80.0) is None  # resumed; calm for 40 s: back to 20
    assert gate.reason(Load(0, 3), 120.0) is None
    assert gate.quiet_seconds == 20
    now, drops = 200.0, 4
    for _ in range(20):  # drops back right after every resume: doubled up to the cap
        assert gate.reason(Load(0, drops), now) is not None
        now += gate.quiet_seconds
        assert gate.reason(Load(0, drops), now) is None
        now, drops = now + 1, drops + 1
    assert gate.quiet_seconds == 320


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31T23:59:59Z"]
)
def test_a_time_out_of_range_is_a_bad_request_not_an_overflow(value: str) -> None:
    with pytest.raises(BadRequest, match=r"^start must be an RFC 3339 time .* between the years"):
        parse_time(value, "start")


def job_on(stream: str, job_id: int = 1) -> Job:
    return Job(
        job_id, stream, NOW, NOW + 10, "", ("original", "vertical"), "fill", None, None,
        JobState.QUEUED, 0.0, "", NOW, None, None, 0.0, (), (),
    )  # fmt: skip


def test_clip_names_keep_the_variant_and_tell_long_streams_apart() -> None:
    longest = "cam-" + "x" * 124  # the longest stream name a request may give (128)
    original, vertical = (clip_name(job_on(longest), v) for v in ("original", "vertical"))
    assert original != vertical
    assert original.endswith("-original") and vertical.endswith("-vertical")
    twin = clip_name(job_on(longest[:-1] + "y"), "original")  # the same first 127 characters
    assert twin != original
    assert all(valid_name(name) for name in (original, vertical, twin))
    assert clip_name(job_on("cam0"), "original") == "clip1-cam0-20261130T005320Z-original"


def test_a_reason_never_carries_a_directory() -> None:
    failed = CutFailed(
        "cannot read the recording: Invalid data found when processing input: "
        "'/var/lib/edged/spool/cam0/20261130T120000Z-000001-000000.mp4'"
    )
    reason = short_reason(failed)
    assert "/" not in reason
    assert reason.endswith("20261130T120000Z-000001-000000.mp4'")


def test_a_journal_counts_starts_and_takes_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "clips" / "jobs.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as old:  # a journal from before attempts were counted
        old.executescript(SCHEMA.replace(",\n    attempts INTEGER NOT NULL DEFAULT 0", ""))
    journal = JobJournal(path)
    request = ClipRequest("cam", NOW, NOW + 5)
    job = journal.add(request, [("/spool/cam/a.mp4", NOW - 1, NOW + 6, "ab")], NOW)
    assert job.attempts == 0
    assert journal.apply(job.id, JobEvent.START, NOW).attempts == 1
    journal.apply(job.id, JobEvent.RESTART, NOW)
    assert journal.apply(job.id, JobEvent.START, NOW).attempts == 2
    journal.close()
