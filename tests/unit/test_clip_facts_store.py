"""Clip facts on the box (#16): the manifest's optional fields, the store's two layers, its
file (0600, atomic, read again at start)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from edged.cache.facts import FACTS, FactsStore, effective
from edged.cache.manifest import parse_manifest
from edged.cache.store import AssetStore
from edged.guest.clips import ClipFacts

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


def test_when_the_layers_disagree_the_crews_fields_alone_count() -> None:
    manifest = {"unpublish_at": "2027-01-15T09:00:00Z", "title": "M"}
    patched = {"publish_at": "2027-01-15T10:00:00Z"}
    assert effective("a", manifest, patched) == ClipFacts("a", publish_at=T + 7200)
    assert effective("a", None, {"exclusive": 1}) == ClipFacts("a")  # a hand-edited file


def test_the_facts_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    store = AssetStore(tmp_path, max_bytes=1 << 20)
    store.facts.patch("a", {"title": "Hello", "unpublish_at": "2027-01-15T08:00:00Z"})
    path = tmp_path / FACTS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(f".{FACTS}*"))  # no temporary left beside it
    again = AssetStore(tmp_path, max_bytes=1 << 20)
    assert again.facts.get("a") == ClipFacts("Hello", unpublish_at=T)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"manifest": 3, "patched": {"a": 1}}'])
def test_an_unreadable_file_starts_without_facts(tmp_path: Path, text: str) -> None:
    (tmp_path / FACTS).write_text(text)
    assert FactsStore(tmp_path).get("a") == ClipFacts("a")
