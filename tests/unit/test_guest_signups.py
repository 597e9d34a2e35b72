"""Sign-ups: what a form may hold, and the book's batches (crash-safe)."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.guest.signups import (
    MAX_EMAIL,
    FormReused,
    GuestBook,
    Refused,
    Removed,
    Signup,
    csv_cell,
    export_csv,
    normalize_email,
    parse_signup,
)

KEY = "k" * 24


def form(**fields: str) -> dict[str, str]:
    return {"key": KEY, "email": "Ada@Example.org ", "consent": "yes", **fields}


def test_a_form_gives_a_normalized_signup() -> None:
    signup = parse_signup(form(name="  Ada   Lovelace "), "spring")
    assert signup == Signup("ada@example.org", "Ada Lovelace", "spring", KEY)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"website": "http://spam"}, "refused"),
        ({"key": "short"}, "reload the page"),
        ({"email": ""}, "email address is needed"),
        ({"email": "no-at-sign"}, "not an email"),
        ({"email": "a@" + "b" * MAX_EMAIL + ".org"}, "at most 254"),
        ({"name": "n" * 101}, "at most 100"),
        ({"consent": ""}, "tick the box"),
        ({"name": "x" * 5000}, "too long"),
    ],
)
def test_a_bad_form_is_refused_with_a_short_reason(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(Refused, match=reason) as refused:
        parse_signup(form(**fields), "")
    assert "@" not in str(refused.value)  # never the address in a reason (it reaches the log)


@given(st.text(max_size=300))
def test_a_normalized_email_is_stable_and_bounded(text: str) -> None:
    try:
        email = normalize_email(text)
    except Refused:
        return
    assert normalize_email(email) == email
    assert len(email) <= MAX_EMAIL
    assert email.count("@") == 1


def test_csv_cells_never_run_as_formulas() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("Ada") == "Ada"


def signup(email: str, key: str = KEY, campaign: str = "") -> Signup:
    return Signup(email, "", campaign, key)


def test_the_book_is_private_and_keeps_one_row_per_email_per_event(tmp_path: Path) -> None:
    book = GuestBook(tmp_path / "guests")
    assert stat.S_IMODE((tmp_path / "guests").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "guests" / "guests.db").stat().st_mode) == 0o600
    first, new = book.sign_up(signup("a@x.org"), event="e", consent="c", now=1.0)
    assert new
    again, new = book.sign_up(signup("a@x.org", "r" * 20), event="e", consent="c", now=2.0)
    assert (again, new) == (first, False)
    retried, new = book.sign_up(signup("a@x.org"), event="e", consent="c", now=3.0)
    assert (retried, new) == (first, False)  # the same form again: its first row
    _, new = book.sign_up(signup("a@x.org", "s" * 20), event="other", consent="c", now=4.0)
    assert new
    assert book.count() == 2
    journal_mode = book._query("PRAGMA journal_mode")[0][0]
    assert journal_mode == "wal"
    book.close()


def test_a_forms_key_with_another_email_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """The back button's form with a corrected address, or a friend's on the same phone: the
    first row is not handed back for it (the address would be lost); review of #16, finding 6."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@exmaple.org"), event="e", consent="c", now=1.0)
    with pytest.raises(FormReused, match="already used; reload the page") as refused:
        book.sign_up(signup("ada@example.org"), event="e", consent="c", now=2.0)
    assert "@" not in str(refused.value)
    assert [g.email for g in book.guests()] == ["ada@exmaple.org"]
    _, new = book.sign_up(signup("ada@example.org", "r" * 20), event="e", consent="c", now=3.0)
    assert new  # a reloaded form


def test_batches_carry_each_row_once_and_deletions(tmp_path: Path) -> None:
    book = GuestBook(tmp_path)
    for n in range(3):
        book.sign_up(signup(f"g{n}@x.org", f"key-{n:020d}"), event="e", consent="c", now=n)
    batch = book.cut_batch(now=10.0, limit=2)
    assert batch is not None
    assert batch.rows == 2
    second = book.cut_batch(now=11.0)
    assert second is not None
    assert book.cut_batch(now=12.0) is None
    book.mark_queued(batch.name)  # handed to the uploader: g0 may go up, so a note follows
    assert book.delete("g0@x.org", now=13.0) == Removed(1, 1)
    third = book.cut_batch(now=14.0)
    assert third is not None
    lines = [
        json.loads(line) for b in (batch, second, third) for line in b.path.read_text().splitlines()
    ]
    assert [(r["type"], r["email"]) for r in lines] == [
        ("signup", "g0@x.org"),
        ("signup", "g1@x.org"),
        ("signup", "g2@x.org"),
        ("deletion", "g0@x.org"),
    ]
    assert [b.name for b in book.unqueued()] == [second.name, third.name]
    book.mark_removed(batch.name)
    assert not batch.path.exists()
    assert [b.name for b in book.unqueued()] == [second.name, third.name]
    assert deletions(book) == [("e", "g0@x.org")]
    book.mark_removed(third.name)  # the note verified upstream: it leaves the box
    assert deletions(book) == []
    assert not traces(tmp_path, b"g0@x.org")


def deletions(book: GuestBook) -> list[tuple[str, str]]:
    return [(r["event"], r["email"]) for r in book._query("SELECT * FROM deletions")]


def traces(directory: Path, data: bytes) -> list[str]:
    """The files under `directory` (the database, its -wal and -shm, batches) holding `data`."""
    return [p.name for p in sorted(directory.rglob("*")) if p.is_file() and data in p.read_bytes()]


def test_a_guest_never_sent_is_deleted_without_a_trace(tmp_path: Path) -> None:
    """Review of #16, finding 2: no deletion note (the address would go upstream for the first
    time, or stay on the box for ever), and the freed bytes overwritten in the files."""
    book = GuestBook(tmp_path)
    book.sign_up(Signup("ada@x.org", "Ada Lovelace", "", KEY), event="e", consent="c", now=1.0)
    book.sign_up(signup("bob@x.org", "b" * 20), event="e", consent="c", now=2.0)
    assert traces(tmp_path, b"ada@x.org")
    assert book.delete("ada@x.org", now=3.0) == Removed(1, 0)
    assert deletions(book) == []
    assert traces(tmp_path, b"ada@x.org") == traces(tmp_path, b"Ada Lovelace") == []
    batch = book.cut_batch(now=4.0)
    assert batch is not None
    assert b"ada@x.org" not in batch.path.read_bytes()


def test_a_guest_in_a_batch_not_yet_queued_is_cut_from_its_file(tmp_path: Path) -> None:
    """Review 16b, finding 4a: the batch file kept the address for the whole outage, and it
    reached the bucket for the first time after the guest asked to be deleted."""
    book = GuestBook(tmp_path)
    book.sign_up(Signup("ada@x.org", "Ada Lovelace", "", KEY), event="e", consent="c", now=1.0)
    book.sign_up(signup("bob@x.org", "b" * 20), event="e", consent="c", now=2.0)
    batch = book.cut_batch(now=3.0)
    assert batch is not None and b"ada@x.org" in batch.path.read_bytes()
    assert book.delete("ada@x.org", now=4.0) == Removed(1, 0)  # never left: no note
    assert traces(tmp_path, b"ada@x.org") == traces(tmp_path, b"Ada Lovelace") == []
    [line] = batch.path.read_text().splitlines()
    assert json.loads(line)["email"] == "bob@x.org"
    assert [(b.name, b.rows) for b in book.unqueued()] == [(batch.name, 1)]
    assert stat.S_IMODE(batch.path.stat().st_mode) == 0o600
    assert book.delete("bob@x.org", now=5.0) == Removed(1, 0)  # the batch left empty: gone
    assert book.unqueued() == [] and not batch.path.exists()
    assert book.cut_batch(now=6.0) is None


def test_a_sent_guest_deleted_without_a_sync_keeps_a_note_for_later(tmp_path: Path) -> None:
    """Review 16b, finding 4b: with no upstream configured the box kept no note, and the
    address stayed in the bucket with no deletion record."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    batch = book.cut_batch(now=2.0)
    assert batch is not None
    book.mark_queued(batch.name)
    assert book.delete("ada@x.org", now=3.0) == Removed(1, 1)
    assert deletions(book) == [("e", "ada@x.org")]
    later = book.cut_batch(now=4.0)  # once an upstream exists, the note goes
    assert later is not None and '"deletion"' in later.path.read_text()


def test_a_guest_deleted_then_signed_up_again_ends_signed_up(tmp_path: Path) -> None:
    """Review 16b, finding 5: a batch held the new sign-up, then the older deletion."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    first = book.cut_batch(now=2.0)
    assert first is not None
    book.mark_queued(first.name)
    book.sign_up(signup("bob@x.org", "b" * 20), event="e", consent="c", now=2.5)
    book.delete("ada@x.org", now=3.0)
    book.sign_up(signup("ada@x.org", "r" * 20), event="e", consent="c", now=4.0)
    batch = book.cut_batch(now=5.0)
    assert batch is not None
    lines = [json.loads(line) for line in batch.path.read_text().splitlines()]
    assert [(r["type"], r["email"]) for r in lines] == [
        ("signup", "bob@x.org"),
        ("deletion", "ada@x.org"),
        ("signup", "ada@x.org"),
    ]


def test_a_sent_guest_of_two_events_gets_a_note_for_each(tmp_path: Path) -> None:
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e1", consent="c", now=1.0)
    book.sign_up(signup("ada@x.org", "r" * 20), event="e2", consent="c", now=1.0)
    while (batch := book.cut_batch(now=2.0)) is not None:
        book.mark_queued(batch.name)
    assert book.delete("ada@x.org", now=3.0) == Removed(2, 2)
    assert sorted(deletions(book)) == [("e1", "ada@x.org"), ("e2", "ada@x.org")]


def test_prune_drops_notes_about_guests_never_sent(tmp_path: Path) -> None:
    """Earlier versions noted every deletion: on a box that never sent a batch of that event,
    the note only kept the address; it goes at the next prune."""
    book = GuestBook(tmp_path)
    for event in ("offline", "sent"):
        book._db.execute(
            "INSERT INTO deletions (event, email, deleted_at) VALUES (?, 'x@x.org', 1.0)", (event,)
        )
    book.sign_up(signup("y@x.org"), event="sent", consent="c", now=1.0)
    assert book.cut_batch(now=2.0) is not None
    book.prune(before=0.0)
    assert deletions(book) == [("sent", "x@x.org")]  # may be about a guest sent: still to go


def test_a_signup_is_a_member_until_deleted_or_pruned(tmp_path: Path) -> None:
    book = GuestBook(tmp_path)
    ada, _ = book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    bob, _ = book.sign_up(signup("bob@x.org", "b" * 20), event="e", consent="c", now=5.0)
    assert book.is_member(ada.signup_id)
    assert book.is_member(bob.signup_id)
    assert not book.is_member("nobody")
    book.close()
    book = GuestBook(tmp_path)  # read back at open
    assert book.is_member(ada.signup_id)
    book.delete("ada@x.org", now=2.0)
    assert not book.is_member(ada.signup_id)
    book.prune(before=10.0)
    assert not book.is_member(bob.signup_id)


def test_a_crash_between_the_file_and_the_commit_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = GuestBook(tmp_path)
    book.sign_up(signup("a@x.org"), event="e", consent="c", now=1.0)

    def crash(*args: object) -> None:
        raise OSError("power cut")

    original = book._db

    class Crashing:
        def __getattr__(self, name: str) -> object:
            return crash if name == "executemany" else getattr(original, name)

    book._db = Crashing()  # type: ignore[assignment]
    with pytest.raises(OSError, match="power cut"):
        book.cut_batch(now=2.0)
    book._db = original
    orphans = list(book.batch_dir.iterdir())
    assert len(orphans) == 1  # written, never committed
    book.close()
    book = GuestBook(tmp_path)  # the restart
    assert list(book.batch_dir.iterdir()) == []
    batch = book.cut_batch(now=3.0)
    assert batch is not None
    assert batch.rows == 1
    assert book.cut_batch(now=4.0) is None


def test_prune_removes_old_signups(tmp_path: Path) -> None:
    book = GuestBook(tmp_path)
    book.sign_up(signup("old@x.org", "o" * 20), event="e", consent="c", now=1.0)
    book.sign_up(signup("new@x.org", "n" * 20), event="e", consent="c", now=100.0)
    assert book.prune(before=50.0) == 1
    assert [g.email for g in book.guests()] == ["new@x.org"]


def test_the_csv_export_has_a_header_and_no_formula_cells(tmp_path: Path) -> None:
    book = GuestBook(tmp_path)
    book.sign_up(Signup("a@x.org", "=cmd|' /C calc'!A0", "", KEY), event="e", consent="c", now=0.0)
    lines = export_csv(GuestBook.read(tmp_path)).splitlines()
    assert lines[0] == "id,event,email,name,campaign,consent,created_at,synced"
    assert ",e,a@x.org,'=cmd|' /C calc'!A0,,c," in lines[1]
    assert GuestBook.read(tmp_path / "nothing-yet") == []


class FailingCommit:
    """A connection whose COMMIT fails (a full disk, an I/O error under synchronous=FULL)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_the_members_follow_the_book_when_a_commit_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 16b, finding 6: the member set changed before COMMIT; a failed one left a phantom
    member, or a guest still in the book whose cookie opened nothing."""
    book = GuestBook(tmp_path)
    ada, _ = book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)

    def in_book() -> set[str]:
        return {row[0] for row in book._query("SELECT signup_id FROM signups")}

    monkeypatch.setattr(book, "_db", FailingCommit(book._db))
    with pytest.raises(sqlite3.OperationalError):
        book.sign_up(signup("bob@x.org", "b" * 20), event="e", consent="c", now=2.0)
    with pytest.raises(sqlite3.OperationalError):
        book.delete("ada@x.org", now=3.0)
    with pytest.raises(sqlite3.OperationalError):
        book.prune(before=10.0)
    monkeypatch.undo()
    assert book._members == in_book() == {ada.signup_id}
    assert book.is_member(ada.signup_id)


def reader_holding_a_snapshot(directory: Path) -> sqlite3.Connection:
    """A reader in a read transaction (as `edged guests export` while it reads)."""
    reader = sqlite3.connect(directory / "guests.db", isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM signups").fetchall()
    return reader


def test_a_deletion_a_reader_delays_says_so_and_truncates_once_it_ends(tmp_path: Path) -> None:
    """Review 16b, finding 8: the truncation's busy result was ignored (the address stayed in
    the WAL unnoticed until the next delete or prune), after waiting the full 5 s busy timeout
    with the book locked."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    (busy_timeout,) = book._db.execute("PRAGMA busy_timeout").fetchone()
    reader = reader_holding_a_snapshot(tmp_path)
    try:
        assert book.delete("ada@x.org", now=2.0) == Removed(1, 0, wal_kept=True)
        assert book.wal_kept
        assert traces(tmp_path, b"ada@x.org") == ["guests.db-wal"]
    finally:
        reader.close()
    assert tuple(book._db.execute("PRAGMA busy_timeout").fetchone()) == (busy_timeout,)
    assert book.truncate_wal()
    assert not book.wal_kept
    assert traces(tmp_path, b"ada@x.org") == []


def test_a_prune_a_reader_delays_leaves_the_wal_to_be_truncated_again(tmp_path: Path) -> None:
    """Review s7a, G1: the prune (and a verified batch's notes) ignored a busy truncation too."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    reader = reader_holding_a_snapshot(tmp_path)
    try:
        assert book.prune(before=2.0) == 1
        assert book.wal_kept
    finally:
        reader.close()
    assert book.truncate_wal()
    assert traces(tmp_path, b"ada@x.org") == []


def test_notes_of_batches_verified_by_an_earlier_version_go_at_the_prune(tmp_path: Path) -> None:
    """Review 16b, finding 8: earlier versions kept a verified batch's deletion notes (the
    address) for retention_days; the prune now drops them."""
    book = GuestBook(tmp_path)
    book.sign_up(signup("ada@x.org"), event="e", consent="c", now=1.0)
    first = book.cut_batch(now=2.0)
    assert first is not None
    book.mark_queued(first.name)
    book.mark_removed(first.name)  # verified upstream: its file left the box
    book.delete("ada@x.org", now=3.0)
    notes = book.cut_batch(now=4.0)
    assert notes is not None
    book.mark_queued(notes.name)
    with book._transaction() as db:  # what an earlier version's mark_removed left
        db.execute("UPDATE batches SET removed = 1 WHERE name = ?", (notes.name,))
    notes.path.unlink()
    assert deletions(book) == [("e", "ada@x.org")]
    book.prune(before=0.0)
    assert deletions(book) == []
    assert traces(tmp_path, b"ada@x.org") == []
