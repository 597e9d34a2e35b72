"""Clip facts on the box (#16): the manifest's optional fields, the store's two layers, its
file (0600, atomic, read again at start)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.cache.facts import FACTS, SET_ASIDE, FactsStore, effective, manifest_layer
from edged.cache.manifest import parse_manifest
from edged.cache.store import AssetStore
from edged.guest.clips import ClipFacts, facts_from_fields, guest_view

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_manifest_entries_carry_their_facts_and_a_bad_field_rejects_only_its_entry() -> None:
    manifest = parse_manifest(
        json.dumps(
            {
                "assets": [
                    {"name": "a", "title": "A <b>", "exclusive": True},
                    {"name": "b", "publish_at": "tomorrow"},
                    {"name": "c", "publish_at": "2027-01-15T08:00:00Z", "unpublish_at": None},
                    {"name": "d", "exclusive": "yes"},
                    "e",
                ]
            }
        ).encode(),
        "assets",
    )
    assert manifest.names == ["a", "c", "e"]
    facts = {entry.name: dict(entry.facts) for entry in manifest.entries}
    assert facts == {
        "a": {"title": "A <b>", "exclusive": True},
        "c": {"publish_at": "2027-01-15T08:00:00Z", "unpublish_at": None},
        "e": {},
    }
    reasons = [(rejected.index, rejected.reason) for rejected in manifest.rejected]
    assert reasons[0][0] == 1
    assert reasons[0][1].startswith("b: publish_at: an RFC 3339 time")
    assert reasons[1] == (3, "d: exclusive must be true or false")


def test_the_crews_fields_go_over_the_manifests(tmp_path: Path) -> None:
    store = FactsStore(tmp_path)
    assert store.get("intro") == ClipFacts("intro")
    store.from_manifest({"intro": {"title": "Intro", "publish_at": "2027-01-15T08:00:00Z"}})
    assert store.get("intro") == ClipFacts("Intro", publish_at=T)
    assert store.patch("intro", {"publish_at": None, "description": "d"}) == ClipFacts("Intro", "d")
    store.from_manifest({"intro": {"title": "New", "exclusive": True}})
    assert store.get("intro") == ClipFacts("New", "d", exclusive=True)
    store.forget("intro")
    assert store.get("intro") == ClipFacts("New", exclusive=True)
    store.from_manifest({})
    assert store.get("intro") == ClipFacts("intro")


def test_a_refused_patch_changes_nothing(tmp_path: Path) -> None:
    store = FactsStore(tmp_path)
    store.from_manifest({"a": {"publish_at": "2027-01-15T08:00:00Z"}})
    with pytest.raises(ValueError, match="unpublish_at must be after publish_at"):
        store.patch("a", {"unpublish_at": "2027-01-15T07:00:00Z"})
    with pytest.raises(ValueError, match="unknown field"):
        store.patch("a", {"colour": "red"})
    assert store.get("a") == ClipFacts("a", publish_at=T)
    assert FactsStore(tmp_path).get("a") == ClipFacts("a", publish_at=T)


def test_when_the_layers_disagree_the_clip_is_withheld_not_public() -> None:
    """Review of #16, finding 3: the manifest says exclusive from 12-02, the crew set only an
    earlier unpublish_at; the crew's layer alone made the finale public until then."""
    manifest = {"exclusive": True, "publish_at": "2027-01-15T10:00:00Z", "title": "Finale"}
    patched = {"unpublish_at": "2027-01-15T09:00:00Z"}
    facts, problem = effective("finale.mp4", manifest, patched)
    assert facts == ClipFacts("Finale", exclusive=True, withheld=True)
    assert problem == "unpublish_at must be after publish_at"
    for now in (T - 1, T, T + 3600, T + 7200, T + 10**6):
        assert guest_view(facts, now, signed_up=True) == "hidden"
    facts, problem = effective("a", None, {"exclusive": 1})  # a hand-edited file
    assert facts == ClipFacts("a", withheld=True) and "exclusive" in problem


FIELD_VALUES = {
    "title": st.sampled_from(["T", "", None, 3, "x" * 200]),
    "description": st.sampled_from(["d", 3]),
    "exclusive": st.sampled_from([True, False, "yes"]),
    "publish_at": st.sampled_from([None, "2027-01-15T08:00:00Z", "2027-01-15T10:00:00Z", "x"]),
    "unpublish_at": st.sampled_from([None, "2027-01-15T09:00:00Z", "2027-01-15T07:00:00Z"]),
}
LAYER = st.fixed_dictionaries({}, optional=FIELD_VALUES) | st.none()


@given(manifest=LAYER, patched=LAYER)
def test_the_layers_give_their_merge_or_a_withheld_clip_never_the_defaults(
    manifest: dict[str, object] | None, patched: dict[str, object] | None
) -> None:
    facts, problem = effective("clip", manifest, patched)
    merged: ClipFacts | str
    try:
        merged = facts_from_fields("clip", {**(manifest or {}), **(patched or {})})
    except ValueError as error:
        merged = str(error)
    if isinstance(merged, str):
        assert facts.withheld and problem == merged
        assert all(guest_view(facts, T + s, signed_up=True) == "hidden" for s in (-9e6, 0, 9e6))
    else:
        assert (facts, problem) == (merged, "")


def test_a_rejected_entry_keeps_the_clips_previous_manifest_fields() -> None:
    previous: dict[str, dict[str, object]] = {
        "finale": {"exclusive": True},
        "plain": {"title": "P"},
    }
    listed: dict[str, dict[str, object]] = {"plain": {}, "new": {"title": "N"}}
    rejected = {"finale": "finale: unpublish_at: ...", "typo": "typo: pin must be true or false"}
    assert manifest_layer(previous, listed, rejected) == {
        "finale": {"exclusive": True},
        "new": {"title": "N"},
    }


def test_a_rejected_entry_keeps_its_facts_or_withholds_the_clip_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FactsStore(tmp_path)
    store.from_manifest({"finale": {"exclusive": True}, "plain": {}})
    reasons = {"finale": "finale: unpublish_at: bad", "plain": "plain: pin must be true or false"}
    with caplog.at_level(logging.WARNING, logger="edged.cache.facts"):
        store.from_manifest({}, reasons)
        store.from_manifest({}, reasons)  # the same manifest read again: no second warning
    assert store.get("finale") == ClipFacts("finale", exclusive=True)  # as before, not public
    assert store.get("plain") == ClipFacts("plain", withheld=True)  # it had none: withheld
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "finale keeps its facts" in warnings[0] and "withheld" in warnings[1]
    again = FactsStore(tmp_path)  # across a restart too (offline)
    assert again.get("plain") == ClipFacts("plain", withheld=True)
    assert again.get("finale") == ClipFacts("finale", exclusive=True)
    # A crew PATCH does not release a clip whose entry is rejected; a corrected manifest does.
    assert store.patch("plain", {"title": "Plain"}) == ClipFacts("Plain", withheld=True)
    store.from_manifest({"finale": {"exclusive": True}, "plain": {}})
    assert store.get("plain") == ClipFacts("Plain")


def test_rejected_entries_carry_the_name_they_gave() -> None:
    manifest = parse_manifest(
        b'[{"name": "a", "unpublish_at": "2027-13-01"}, {"name": "../x"}, 7,'
        b' {"name": "b", "pin": "yes"}, "c", "c"]',
        "assets",
    )
    assert [(r.index, r.name) for r in manifest.rejected] == [
        (0, "a"),
        (1, ""),
        (2, ""),
        (3, "b"),
        (5, ""),  # listed twice: the first entry counts, its facts are not in doubt
    ]


def test_the_facts_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    store = AssetStore(tmp_path, max_bytes=1 << 20)
    store.facts.patch("a", {"title": "Hello", "unpublish_at": "2027-01-15T08:00:00Z"})
    path = tmp_path / FACTS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(f".{FACTS}*"))  # no temporary left beside it
    again = AssetStore(tmp_path, max_bytes=1 << 20)
    assert again.facts.get("a") == ClipFacts("Hello", unpublish_at=T)


@pytest.mark.parametrize(
    "text",
    [
        b"{not json",
        b"[1, 2]",
        b'{"manifest": 3}',
        b'{"patched": {"a": 1}}',
        b'{"rejected": []}',
        b'{"lost": "a"}',
        b"\xff\xfe",
    ],
)
def test_an_unreadable_file_withholds_the_clips_on_the_box_until_facts_are_set(
    tmp_path: Path, text: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Review 16b, finding 3: an unreadable file started without facts, and every clip staged
    by PATCH turned public for good (the next save overwrote the evidence)."""
    (tmp_path / FACTS).write_bytes(text)
    with caplog.at_level(logging.ERROR, logger="edged.cache.facts"):
        store = FactsStore(tmp_path)
    assert (tmp_path / SET_ASIDE).read_bytes() == text  # kept for the crew
    [error] = [r.getMessage() for r in caplog.records]
    assert "unreadable" in error and SET_ASIDE in error and str(tmp_path) not in error
    store.lost_on(["a", "b", "c"])
    assert all(store.get(name).withheld for name in "abc")
    assert FactsStore(tmp_path).get("a").withheld  # across a restart too
    store.from_manifest({"a": {"title": "A"}, "b": {}})  # a manifest read lists a and b
    assert store.get("a") == ClipFacts("A") and store.get("b") == ClipFacts("b")
    assert store.get("c").withheld
    store.patch("c", {})  # the crew vouches for c
    assert store.get("c") == ClipFacts("c")
    assert FactsStore(tmp_path).get("c") == ClipFacts("c")


def test_a_readable_file_withholds_nothing_on_the_box(tmp_path: Path) -> None:
    FactsStore(tmp_path).patch("a", {"title": "A"})
    store = FactsStore(tmp_path)
    store.lost_on(["a", "b"])
    assert store.get("b") == ClipFacts("b") and store.get("a") == ClipFacts("A")
    assert not (tmp_path / SET_ASIDE).exists()


def test_a_clip_the_manifest_stops_listing_keeps_its_facts_while_on_the_box(
    tmp_path: Path,
) -> None:
    """Review 16b, finding 3: an entry removed (to postpone the finale), or one whose name has
    a typo (rejected with no name), made the clip on the box a plain public clip."""
    store = FactsStore(tmp_path)
    staged = {"exclusive": True, "publish_at": "2027-01-15T08:00:00Z"}
    store.from_manifest({"finale.mp4": staged, "gone.mp4": {"title": "G"}}, on_box={"finale.mp4"})
    typo = parse_manifest(
        json.dumps([{"name": "finale.mp4 ", **staged}, "other.mp4"]).encode(), "assets"
    )
    assert [r.name for r in typo.rejected] == [""]  # no name to keep its facts by
    listed = {entry.name: dict(entry.facts) for entry in typo.entries}
    store.from_manifest(listed, {}, on_box={"finale.mp4", "gone.mp4"})
    expected = facts_from_fields("finale.mp4", staged)
    assert expected.exclusive and expected.publish_at == T
    assert store.get("finale.mp4") == expected
    assert store.get("gone.mp4") == ClipFacts("G")  # still on the box: as it was
    assert FactsStore(tmp_path).get("finale.mp4") == expected  # across a restart
    store.from_manifest({}, {}, on_box={"finale.mp4"})  # removed: the same
    assert store.get("finale.mp4") == expected
    assert store.get("gone.mp4") == facts_from_fields("gone.mp4", {})  # no longer on the box: gone
    store.gone(["finale.mp4"])  # evicted: its kept facts go with it
    assert store.get("finale.mp4") == facts_from_fields("finale.mp4", {})
    assert FactsStore(tmp_path).get("finale.mp4") == facts_from_fields("finale.mp4", {})


def test_a_listed_clip_evicted_keeps_its_manifest_facts(tmp_path: Path) -> None:
    store = FactsStore(tmp_path)
    store.from_manifest({"a": {"exclusive": True}}, on_box={"a"})
    store.gone(["a"])  # listed still: it may come back (pull-through, the next pass)
    assert store.get("a") == ClipFacts("a", exclusive=True)


def test_manifest_layer_keeps_unlisted_clips_on_the_box_only() -> None:
    previous: dict[str, dict[str, object]] = {"here": {"exclusive": True}, "away": {"title": "A"}}
    assert manifest_layer(previous, {}, {}, on_box={"here"}) == {"here": {"exclusive": True}}
    assert manifest_layer(previous, {"here": {}}, {}, on_box={"here"}) == {}  # listed plain


def test_a_manifest_that_moves_the_window_past_the_crews_withholds_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FactsStore(tmp_path)
    store.from_manifest({"finale": {"exclusive": True}})
    store.patch("finale", {"unpublish_at": "2027-01-15T09:00:00Z"})
    moved = {"finale": {"exclusive": True, "publish_at": "2027-01-15T10:00:00Z"}}
    with caplog.at_level(logging.WARNING, logger="edged.cache.facts"):
        store.from_manifest(moved)
        store.from_manifest(moved)
        store.patch("other", {"title": "O"})  # published again: no second warning
    assert store.get("finale") == ClipFacts("finale", exclusive=True, withheld=True)
    [warning] = [record.getMessage() for record in caplog.records]
    assert "finale withheld from guests: unpublish_at must be after publish_at" in warning
    store.patch("finale", {"unpublish_at": None})  # the crew follows the manifest
    assert store.get("finale") == ClipFacts("finale", exclusive=True, publish_at=T + 7200)
