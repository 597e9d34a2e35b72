"""The manifest's clip facts reach the box (#16 part 4): replicated from a real S3 server
(moto), kept in the facts store, replaced when the manifest changes, kept across a restart
(an offline box still holds a staged clip back)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edged.cache.store import AssetStore
from edged.cache.upstream import Replicator
from edged.guest.clips import ClipFacts, guest_view
from tests.clips import make_clip
from tests.integration.test_cache import upload
from tests.integration.upload_support import make_store, s3
from tests.s3server import S3Server

pytestmark = pytest.mark.integration
__all__ = ["s3"]

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_the_manifests_facts_are_kept_on_the_box(tmp_path: Path, s3: S3Server) -> None:
    upload(s3, "assets/teaser.mp4", make_clip(tmp_path / "teaser.mp4", seconds=1).read_bytes())
    manifest = [
        {"name": "teaser.mp4", "title": "<i>Teaser</i>", "publish_at": "2027-01-15T08:00:00Z"},
        {"name": "late.mp4", "exclusive": "yes"},  # refused, its reason in the status
    ]
    upload(s3, "manifest.json", json.dumps(manifest).encode())
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets")
    assert replicator.sync() == ["teaser.mp4"]
    staged = ClipFacts("<i>Teaser</i>", publish_at=T)
    assert store.facts.get("teaser.mp4") == staged
    assert guest_view(staged, T - 1, signed_up=True) == "hidden"
    assert "exclusive must be true or false" in json.dumps(replicator.status())

    # Offline after a restart: the clip is still held back.
    assert AssetStore(tmp_path / "cache", max_bytes=10**9).facts.get("teaser.mp4") == staged

    upload(s3, "manifest.json", json.dumps([{"name": "teaser.mp4", "exclusive": True}]).encode())
    replicator.sync()
    assert store.facts.get("teaser.mp4") == ClipFacts("teaser", exclusive=True)


def test_a_typo_in_the_exclusive_finales_window_keeps_it_exclusive(
    tmp_path: Path, s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of #16, finding 3: the entry was rejected, its facts dropped from the manifest's
    layer, and the exclusive finale (still on the box) turned public on the next read. Now it
    keeps the facts it had; a clip the manifest never described before is withheld."""
    for name in ("finale.mp4", "encore.mp4"):
        upload(s3, f"assets/{name}", make_clip(tmp_path / name, seconds=1).read_bytes())
    finale = {"name": "finale.mp4", "exclusive": True, "unpublish_at": "2027-01-15T08:00:00Z"}
    upload(s3, "manifest.json", json.dumps([finale, "encore.mp4"]).encode())
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    replicator = Replicator(store, make_store(s3), "manifest.json", "assets")
    assert replicator.sync() == ["finale.mp4", "encore.mp4"]
    exclusive = ClipFacts("finale", exclusive=True, unpublish_at=T)
    assert store.facts.get("finale.mp4") == exclusive

    typos = [
        {**finale, "unpublish_at": "2027-01-15T08:00:00"},  # no offset: the entry is rejected
        {"name": "encore.mp4", "exclusive": "true"},  # its first facts, rejected
    ]
    upload(s3, "manifest.json", json.dumps(typos).encode())
    with caplog.at_level(logging.WARNING, logger="edged.cache.facts"):
        replicator.sync()
    assert store.facts.get("finale.mp4") == exclusive
    assert guest_view(store.facts.get("finale.mp4"), T - 1, signed_up=False) == "members"
    assert store.get("finale.mp4") is not None  # still on the box
    encore = store.facts.get("encore.mp4")
    assert encore.withheld and guest_view(encore, T - 1, signed_up=True) == "hidden"
    skipped = replicator.status()["skipped"]
    assert [entry["name"] for entry in skipped] == ["finale.mp4", "encore.mp4"]
    messages = [r.getMessage() for r in caplog.records if r.name == "edged.cache.facts"]
    assert len(messages) == 2 and all("rejected" in message for message in messages), messages
    # Offline after a restart: the same.
    again = AssetStore(tmp_path / "cache", max_bytes=10**9).facts
    assert again.get("finale.mp4") == exclusive and again.get("encore.mp4").withheld

    upload(s3, "manifest.json", json.dumps([finale, "encore.mp4"]).encode())
    replicator.sync()
    assert store.facts.get("encore.mp4") == ClipFacts("encore")
