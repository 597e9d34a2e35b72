"""The decisions of one file's transfer and of the queue worker around it, without I/O: the
source file's checks, which parts survive a resume, which error of failed parts counts, the
probe's backoff, the offline warning's rate and the event log's prune schedule."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.s3bucket import (
    ClockSkewed,
    CredentialsRefused,
    UploadLost,
    UpstreamError,
    UpstreamUnreachable,
)
from edged.upload.journal import FileRecord, PartRecord
from edged.upload.policy import MIN_PART_SIZE, PartSpan
from edged.upload.source import (
    Digest,
    KeyTaken,
    SourceProblem,
    check_digest,
    check_source,
    first_changed_part,
    read_as_sent,
    read_span,
)
from edged.upload.state import FileState
from edged.upload.transfer import content_type, most_telling, reconcile_parts
from edged.upload.uploader import (
    OFFLINE_WARNING_SECONDS,
    PROBE_MAX_SECONDS,
    PROBE_MIN_SECONDS,
    next_probe_delay,
    offline_warning_due,
    prune_due,
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def record_of(path: Path, sha256: str = "") -> FileRecord:
    facts = os.stat(path)
    return FileRecord(
        id=7,
        path=str(path),
        key="e/n/s/d/a.mp4",
        size=facts.st_size,
        mtime_ns=facts.st_mtime_ns,
        sha256=sha256 or hashlib.sha256(path.read_bytes()).hexdigest(),
        priority=10,
        kind="recording",
        created=0.0,
        state=FileState.UPLOADING,
        attempts=0,
        next_attempt=0.0,
        last_error="",
        upload_id="",
        part_size=0,
        etag="",
        after_id=None,
    )


# -- the source file -------------------------------------------------------------------------


def test_a_span_is_read_with_its_md5_and_fed_to_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"0123456789")
    digest = Digest()
    assert read_span(str(path), PartSpan(2, 3, 4), digest) == (b"3456", md5(b"3456"))
    assert digest.sha256.hexdigest() == hashlib.sha256(b"3456").hexdigest()
    assert digest.md5.hexdigest() == md5(b"3456")


def test_a_span_past_the_end_or_of_a_missing_file_is_a_source_problem(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"0123")
    with pytest.raises(SourceProblem, match="shorter than when it was queued"):
        read_span(str(path), PartSpan(1, 0, 5))
    with pytest.raises(SourceProblem, match="cannot be read"):
        read_span(str(tmp_path / "gone.mp4"), PartSpan(1, 0, 1))


def test_a_file_read_as_sent_gives_each_parts_md5_and_the_whole_digest(tmp_path: Path) -> None:
    part_size = MIN_PART_SIZE
    data = os.urandom(part_size + 5)
    path = tmp_path / "a.mp4"
    path.write_bytes(data)
    digest, md5s = read_as_sent(str(path), len(data), part_size)
    assert md5s == [md5(data[:part_size]), md5(data[part_size:])]
    assert digest.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert read_as_sent(str(path), len(data), len(data))[1] == [md5(data)]  # one PUT


def test_the_source_as_queued_passes_and_a_changed_or_deleted_one_fails(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"queued")
    record = record_of(path)
    check_source(record)
    path.write_bytes(b"changed!")
    with pytest.raises(SourceProblem, match="changed since it was queued"):
        check_source(record)
    path.unlink()
    with pytest.raises(SourceProblem, match="deleted before it was uploaded"):
        check_source(record)


def test_bytes_read_for_sending_must_hash_as_at_enqueue(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"queued")
    record = record_of(path)
    same = Digest()
    same.update(b"queued")
    check_digest(record, same)
    rotten = Digest()
    rotten.update(b"queuex")
    with pytest.raises(SourceProblem, match="bit rot"):
        check_digest(record, rotten)


def test_the_first_part_whose_bytes_changed_since_they_were_sent() -> None:
    sent = {1: "a", 2: "b", 3: "c"}
    assert first_changed_part(sent, ["a", "b", "c"]) is None
    assert first_changed_part(sent, ["a", "x", "y"]) == 2
    assert first_changed_part(sent, ["a", "b", "c", "d"]) == 4  # a part never sent
    assert first_changed_part({}, ["a"]) == 1


# -- the transfer ----------------------------------------------------------------------------


def part(number: int, etag: str) -> PartRecord:
    return PartRecord(number, 5 * 1024 * 1024, etag, etag)


def test_a_resume_keeps_the_journals_parts_the_server_holds_with_the_same_etag() -> None:
    done = {1: part(1, "a"), 2: part(2, "b"), 3: part(3, "c")}
    held = {1: "a", 2: "other", 4: "d"}
    kept, missing = reconcile_parts(done, held)
    assert kept == {1: part(1, "a")}
    assert missing == [2, 3]


@given(st.dictionaries(st.integers(1, 20), st.sampled_from("abc")), st.sets(st.integers(1, 20)))
def test_reconciled_parts_split_the_journals_parts(held: dict[int, str], numbers: set[int]) -> None:
    done = {number: part(number, "a") for number in numbers}
    kept, missing = reconcile_parts(done, held)
    assert set(kept) | set(missing) == set(done)
    assert not set(kept) & set(missing)
    assert all(held[number] == done[number].etag for number in kept)


def test_the_most_telling_error_of_failed_parts_decides_the_files_fate() -> None:
    plain, unreachable = UpstreamError("503"), UpstreamUnreachable("refused")
    refused, skewed, lost = CredentialsRefused("403"), ClockSkewed("skew"), UploadLost("gone")
    source = KeyTaken("taken")
    order = [source, lost, skewed, refused, unreachable]
    for index, expected in enumerate(order):
        errors = [plain, *reversed(order[index:])]
        assert most_telling(ExceptionGroup("parts", errors)) is expected
    assert most_telling(ExceptionGroup("parts", [plain, UpstreamError("500")])) is plain


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("e/n/s/d/a.mp4", "video/mp4"),
        ("e/n/s/d/a.json", "application/json"),
        ("e/n/s/d/a.jpg", "application/octet-stream"),
    ],
)
def test_the_content_type_of_a_single_put(key: str, expected: str) -> None:
    assert content_type(key) == expected


# -- the worker ------------------------------------------------------------------------------


def test_the_probe_backs_off_doubling_up_to_its_cap() -> None:
    delays = [PROBE_MIN_SECONDS]
    for _ in range(10):
        delays.append(next_probe_delay(delays[-1]))
    assert delays[:4] == [PROBE_MIN_SECONDS * 2**n for n in range(4)]
    assert delays[-1] == PROBE_MAX_SECONDS
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))


def test_offline_warns_when_the_link_goes_then_once_a_minute() -> None:
    assert offline_warning_due(True, now=100.0, last_warning=99.0)
    assert not offline_warning_due(False, now=100.0, last_warning=99.0)
    assert not offline_warning_due(False, now=100.0, last_warning=100.0 - OFFLINE_WARNING_SECONDS)
    assert offline_warning_due(False, now=100.1, last_warning=100.0 - OFFLINE_WARNING_SECONDS)


def test_the_event_log_is_pruned_first_then_on_its_interval() -> None:
    assert prune_due(None, monotonic=5.0, interval=86400.0)
    assert not prune_due(5.0, monotonic=86404.0, interval=86400.0)
    assert prune_due(5.0, monotonic=86405.0, interval=86400.0)
    assert prune_due(5.0, monotonic=5.0, interval=0.0)
