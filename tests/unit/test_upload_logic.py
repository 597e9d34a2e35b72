"""The uploader's pure parts: state machine, part plan, ETag, backoff, bandwidth, keys."""

from __future__ import annotations

import hashlib
import itertools
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.upload.policy import (
    BACKOFF_CAP_SECONDS,
    MAX_PARTS,
    MIN_PART_SIZE,
    TokenBucket,
    backoff_seconds,
    multipart_etag,
    object_key,
    plan_parts,
)
from edged.upload.state import (
    IN_FLIGHT,
    TRANSITIONS,
    FileState,
    InvalidTransition,
    UploadEvent,
    next_state,
)

MiB = 1024 * 1024


def test_happy_path() -> None:
    state = FileState.QUEUED
    for event, expected in [
        (UploadEvent.START, FileState.UPLOADING),
        (UploadEvent.PARTS_SENT, FileState.COMPLETING),
        (UploadEvent.COMPLETED, FileState.VERIFYING),
        (UploadEvent.VERIFIED, FileState.DONE),
    ]:
        state = next_state(state, event)
        assert state is expected


@pytest.mark.parametrize("state", IN_FLIGHT)
def test_errors_in_flight(state: FileState) -> None:
    assert next_state(state, UploadEvent.RETRYABLE_ERROR) is state
    assert next_state(state, UploadEvent.UPLOAD_LOST) is FileState.QUEUED
    assert next_state(state, UploadEvent.FATAL_ERROR) is FileState.FAILED


def test_failed_comes_back_only_by_retry() -> None:
    assert next_state(FileState.FAILED, UploadEvent.RETRY) is FileState.QUEUED
    assert next_state(FileState.QUEUED, UploadEvent.FATAL_ERROR) is FileState.FAILED


@pytest.mark.parametrize("state", list(FileState))
@pytest.mark.parametrize("event", list(UploadEvent))
def test_every_pair_is_either_listed_or_refused(state: FileState, event: UploadEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"{event} is not allowed in state {state}"):
            next_state(state, event)


def test_done_is_final() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is FileState.DONE]


@given(
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=MIN_PART_SIZE, max_value=64 * MiB),
)
def test_part_plan_covers_the_file(size: int, part_size: int) -> None:
    parts = plan_parts(size, part_size)
    if size <= part_size:
        assert parts == []
        return
    assert len(parts) <= MAX_PARTS
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert parts[0].offset == 0
    for before, after in itertools.pairwise(parts):
        assert after.offset == before.offset + before.size
        assert before.size >= MIN_PART_SIZE
    assert parts[-1].offset + parts[-1].size == size


def test_multipart_etag_is_md5_of_md5s() -> None:
    chunks = [b"a" * 10, b"b" * 5]
    md5s = [hashlib.md5(c).hexdigest() for c in chunks]
    joined = hashlib.md5(b"".join(hashlib.md5(c).digest() for c in chunks)).hexdigest()
    assert multipart_etag(md5s) == f"{joined}-2"


@given(st.integers(min_value=1, max_value=100), st.integers())
def test_backoff_grows_with_jitter_and_a_cap(attempts: int, seed: int) -> None:
    wait = backoff_seconds(attempts, random.Random(seed))
    ceiling = min(BACKOFF_CAP_SECONDS, 2.0 * 2 ** (attempts - 1))
    assert ceiling / 2 <= wait <= ceiling


def test_token_bucket() -> None:
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.reserve(1000, now=0.0) == 0.0
    assert bucket.reserve(500, now=0.0) == pytest.approx(0.5)
    assert bucket.reserve(500, now=2.0) == 0.0  # refilled, capped at one second's worth
    bucket.set_rate(0, now=2.0)
    assert bucket.reserve(10**9, now=2.0) == 0.0
    bucket.set_rate(100, now=3.0)
    assert bucket.reserve(200, now=3.0) == pytest.approx(2.0)


def test_object_key_layout() -> None:
    when = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    key = object_key(
        prefix="fest/", event="gala", node="box", stream="cam1", when=when, filename="0001.mp4"
    )
    assert key == "fest/gala/box/cam1/2026-11-26/0001.mp4"
    no_prefix = object_key(prefix="", event="e", node="n", stream="s", when=when, filename="f")
    assert no_prefix == "e/n/s/2026-11-26/f"


@pytest.mark.parametrize("stream", ["..", "a/b", "", "x y", "."])
def test_object_key_refuses_unsafe_parts(stream: str) -> None:
    with pytest.raises(ValueError, match="cannot be part of an object key"):
        object_key(
            prefix="", event="e", node="n", stream=stream, when=datetime.now(UTC), filename="f.mp4"
        )


@pytest.mark.parametrize("name", ["Opening Night.mp4", "été.mp4", "a(1).mp4", "-x"])
def test_object_key_keeps_a_file_name(name: str) -> None:
    when = datetime(2026, 11, 26, tzinfo=UTC)
    key = object_key(prefix="", event="e", node="n", stream="s", when=when, filename=name)
    assert key == f"e/n/s/2026-11-26/{name}"


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "x\ny", "tab\t", "\x7f", "\udcff.mp4"])
def test_object_key_refuses_a_file_name_that_changes_its_shape(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be part of an object key"):
        object_key(
            prefix="", event="e", node="n", stream="s", when=datetime.now(UTC), filename=name
        )


def test_sts_session_policy_is_limited_to_the_event_prefix() -> None:
    import json

    from edged.s3bucket import session_policy

    policy = json.loads(session_policy("edged", "fest/gala/"))
    objects, listing = policy["Statement"]
    assert objects["Resource"] == ["arn:aws:s3:::edged/fest/gala/*"]
    assert "s3:DeleteObject" not in objects["Action"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["fest/gala/*"]}}
