"""The order of the upload queue (edged/upload/policy.py): classes, publish times, age, files
waiting for their predecessor, the classes an uplink carries, and what preempts a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edged.upload.classes import UploadClass, class_of
from edged.upload.journal import Journal
from edged.upload.policy import (
    KINDS,
    next_due,
    outranks,
    pick_next,
    publish_time,
    queue_order,
)
from edged.upload.report import upload_report
from edged.upload.state import UploadEvent
from tests.unit.test_journal import add


@dataclass(frozen=True)
class Q:
    id: int
    kind: str
    created: float = 0.0
    next_attempt: float = 0.0
    after_id: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def ids(records: list[Q]) -> list[int]:
    return [record.id for record in records]


def test_classes_go_highest_first_whatever_their_age() -> None:
    files = [
        Q(1, "recording", created=1),
        Q(2, "sidecar", created=2),
        Q(3, "clip", created=3),
        Q(4, "guest", created=4),
        Q(5, "manifest", created=5),
        Q(6, "highlight", created=6),
        Q(7, "file", created=0),  # a kind of no class of its own travels as a recording
    ]
    assert ids(queue_order(files)) == [4, 3, 6, 2, 5, 7, 1]


def test_clips_go_by_soonest_publish_time_then_those_without_oldest_first() -> None:
    files = [
        Q(1, "clip", created=1),
        Q(2, "clip", created=2, metadata={"publish_at": "2026-11-30T20:00:00Z"}),
        Q(3, "clip", created=3, metadata={"publish_at": "2026-11-30T19:00:00+00:00"}),
        Q(4, "clip", created=0),
        Q(5, "highlight", created=5, metadata={"publish_at": "1796061600"}),  # 18:00 UTC
        Q(6, "clip", created=6, metadata={"publish_at": "soon"}),  # unreadable: none
    ]
    assert ids(queue_order(files)) == [5, 3, 2, 4, 1, 6]


def test_newest_first_flips_recordings_only() -> None:
    files = [
        Q(1, "recording", created=1),
        Q(2, "recording", created=2),
        Q(3, "sidecar", created=1),
        Q(4, "sidecar", created=2),
        Q(5, "clip", created=1),
        Q(6, "clip", created=2),
    ]
    assert ids(queue_order(files)) == [5, 6, 3, 4, 1, 2]
    assert ids(queue_order(files, newest_first=True)) == [5, 6, 3, 4, 2, 1]


def test_a_sidecar_goes_right_after_its_recording_and_one_whose_recording_failed_goes_last() -> (
    None
):
    files = [
        Q(1, "recording", created=1),
        Q(2, "sidecar", created=2, after_id=1),
        Q(3, "recording", created=3),
        Q(4, "sidecar", created=4, after_id=3),
        Q(5, "sidecar", created=0, after_id=99),  # its recording failed: not pending
        Q(6, "manifest", created=9),
    ]
    order = queue_order(files, blocked={2, 4, 5})
    assert ids(order) == [6, 1, 2, 3, 4, 5]
    assert pick_next(files, 10, blocked={2, 4, 5}).id == 6  # type: ignore[union-attr]
    assert pick_next(files[:5], 10, blocked={2, 4, 5}).id == 1  # type: ignore[union-attr]


def test_the_next_file_is_due_and_of_a_class_an_uplink_carries() -> None:
    files = [
        Q(1, "guest", next_attempt=50),  # backing off
        Q(2, "clip"),
        Q(3, "recording"),
    ]
    assert pick_next(files, 10).id == 2  # type: ignore[union-attr]
    assert pick_next(files, 50).id == 1  # type: ignore[union-attr]
    metered = frozenset({UploadClass.GUEST, UploadClass.CLIP})
    assert pick_next(files[2:], 10, classes=metered) is None  # a recording waits
    assert pick_next(files[1:], 10, classes=metered).id == 2  # type: ignore[union-attr]
    assert pick_next([], 10) is None


def test_the_next_due_time_counts_only_files_that_may_go() -> None:
    files = [Q(1, "guest", next_attempt=50), Q(2, "recording", next_attempt=20)]
    assert next_due(files) == 20
    assert next_due(files, classes=frozenset({UploadClass.GUEST})) == 50
    assert next_due(files, blocked={1}, classes=frozenset({UploadClass.GUEST})) is None
    assert next_due([]) is None


def test_only_a_higher_class_preempts_the_file_in_flight() -> None:
    recording = Q(1, "recording")
    assert outranks(Q(2, "clip"), recording)
    assert outranks(Q(3, "sidecar"), recording)
    assert not outranks(Q(4, "recording"), recording)
    assert not outranks(None, recording)
    assert not outranks(recording, Q(5, "guest"))


def test_publish_times_in_the_forms_a_clip_may_carry() -> None:
    assert publish_time({"publish_at": "2026-11-30T18:00:00Z"}) == 1796061600
    assert publish_time({"publish_at": "2026-11-30T19:00:00+01:00"}) == 1796061600
    assert publish_time({"publish_at": "2026-11-30T18:00:00"}) == 1796061600  # no zone: UTC
    assert publish_time({"publish_at": " 1796061600.5 "}) == 1796061600.5
    for unreadable in ("", "tomorrow", "-5", "2026-13-01", "1e9"):
        assert publish_time({"publish_at": unreadable}) is None
    assert publish_time({}) is None


def test_every_kind_the_api_takes_has_its_class() -> None:
    assert "guest" in KINDS and "manifest" in KINDS and "sidecar" in KINDS


queued = st.lists(
    st.builds(
        Q,
        id=st.integers(1, 10**6),
        kind=st.sampled_from((*KINDS, "signup", "other")),
        created=st.floats(0, 1e9),
        next_attempt=st.floats(0, 100),
        metadata=st.dictionaries(
            st.just("publish_at"), st.sampled_from(("", "1796061600", "2026-11-30T17:00:00Z"))
        ),
    ),
    unique_by=lambda record: record.id,
    max_size=30,
)


@given(queued, st.booleans(), st.randoms())
def test_the_order_is_a_permutation_whatever_order_the_files_come_in(
    files: list[Q], newest_first: bool, shuffler: object
) -> None:
    order = queue_order(files, newest_first=newest_first)
    shuffled = list(files)
    shuffler.shuffle(shuffled)  # type: ignore[attr-defined]
    assert sorted(ids(order)) == sorted(ids(files))
    assert ids(queue_order(shuffled, newest_first=newest_first)) == ids(order)


@given(queued, st.floats(0, 100), st.frozensets(st.sampled_from(UploadClass)))
def test_the_next_file_is_the_first_of_the_order_that_may_go(
    files: list[Q], now: float, classes: frozenset[UploadClass]
) -> None:
    may_go = [
        record
        for record in queue_order(files)
        if record.next_attempt <= now and class_of(record.kind) in classes
    ]
    picked = pick_next(files, now, classes=classes)
    assert picked == (may_go[0] if may_go else None)


def test_the_report_shows_each_pending_files_class_and_position(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    try:
        old = add(journal, "old.mp4", kind="recording", now=1)
        sidecar = add(journal, "old.json", kind="sidecar", now=2, after_id=old)
        new = add(journal, "new.mp4", kind="recording", now=3)
        clip = add(journal, "clip.mp4", kind="clip", now=4)
        guest = add(journal, "signups.csv", kind="guest", now=5)
        gone = add(journal, "gone.mp4", kind="recording", now=0)
        journal.apply(gone, UploadEvent.START)
        journal.apply(gone, UploadEvent.FATAL_ERROR, detail="x")
        rows = upload_report(journal)["files"]
        shown = [(row["id"], row["class"], row["position"]) for row in rows]
        assert shown == [
            (guest, "guest", 1),
            (clip, "clip", 2),
            (old, "recording", 3),
            (sidecar, "manifest", 4),
            (new, "recording", 5),
            (gone, "recording", None),
        ]
        flipped = upload_report(journal, newest_first=True)["files"]
        assert [row["id"] for row in flipped][2:5] == [new, old, sidecar]
        assert journal.next_ready(10).id == guest  # type: ignore[union-attr]
        assert [row["id"] for row in upload_report(journal, limit=2)["files"]] == [guest, clip]
    finally:
        journal.close()


@given(st.data())
def test_a_file_waiting_for_its_predecessor_comes_after_it_and_is_never_picked(
    data: st.DataObject,
) -> None:
    count = data.draw(st.integers(1, 25))
    files = []
    for number in range(1, count + 1):
        after = data.draw(st.none() | st.integers(1, number + 5))  # some point at no pending file
        files.append(
            Q(
                number,
                data.draw(st.sampled_from(KINDS)),
                created=data.draw(st.floats(0, 100)),
                after_id=after if after is None or after < number or after > count else None,
            )
        )
    blocked = {record.id for record in files if record.after_id is not None}
    order = ids(queue_order(files, blocked=blocked))
    assert sorted(order) == list(range(1, count + 1))
    for record in files:
        if record.after_id is not None and record.after_id <= count:
            assert order.index(record.after_id) < order.index(record.id)
    picked = pick_next(files, 1000, blocked=blocked)
    assert picked is None or picked.id not in blocked
    assert (picked is None) == (blocked == set(order))
