"""The asset store's reads never wait for its writer: they answer from an immutable snapshot the
one writer replaces whole, so the event loop may call them while a write is held up in fsync."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edged.cache import store as store_module
from edged.cache.store import Asset, AssetStore
from edged.fileio import write_atomically
from tests.clips import make_clip

pytestmark = pytest.mark.integration

DEADLINE = 30.0  # seconds a read may take before the test calls it stuck (it takes microseconds)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4", seconds=1.0)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


class HeldSave:
    """Holds the store's index writes (a slow SD card's fsync) until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: Path, data: bytes, *more: Any) -> None:
        if path.name == store_module.INDEX:
            self.entered.set()
            assert self.release.wait(DEADLINE)
        write_atomically(path, data, *more)


def test_reads_answer_while_a_write_is_held_in_its_fsync(
    tmp_path: Path, clip: Path, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    store.add(clip, "teaser.mp4", pin=True, origin="test")
    held = HeldSave()
    monkeypatch.setattr(store_module, "write_atomically", held)

    adding: Future[object] = pool.submit(store.add, clip, "walkin.mp4", pin=False, origin="test")
    try:
        assert held.entered.wait(DEADLINE), adding.exception(0) if adding.done() else "no write"

        def read() -> tuple[Asset | None, bytes | None, list[str], int]:
            store.touch("teaser.mp4", now=5.0)
            return (
                store.get("teaser.mp4"),
                store.hot("teaser.mp4"),
                [asset.name for asset in store.assets()],
                store.total_bytes,
            )

        teaser, hot, names, total = pool.submit(read).result(DEADLINE)
    finally:
        held.release.set()
    adding.result(DEADLINE)

    assert teaser is not None and teaser.last_access == 5.0
    known = store.known("teaser.mp4")  # as added: the size and pin a request needs, no copy
    assert known is not None and known.size == teaser.size and known.last_access != 5.0
    assert store.known("nothing.mp4") is None
    assert hot is not None and len(hot) > 0
    assert names == ["teaser.mp4", "walkin.mp4"]  # the clip in place is served at once
    assert total > 0
    store.set_pinned("teaser.mp4", True)  # the next change of the index saves the access too
    saved = AssetStore(tmp_path / "cache", max_bytes=10**9).get("teaser.mp4")
    assert saved is not None and saved.last_access == 5.0


def test_reads_never_touch_the_disk(tmp_path: Path, clip: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    store.add(clip, "teaser.mp4", pin=True, origin="test")
    # The daemon holds the data dir, so no other process writes the index: the store does not
    # read it again (it used to, on the event loop, when its mtime changed).
    (tmp_path / "cache" / store_module.INDEX).write_bytes(b"{ not json")
    asset = store.get("teaser.mp4")
    assert asset is not None and store.hot("teaser.mp4") is not None
    assert [a.name for a in store.assets()] == ["teaser.mp4"]


def test_evicted_and_removed_clips_leave_every_read(tmp_path: Path, clip: Path) -> None:
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    first = store.add(clip, "first.mp4", pin=False, origin="test")
    store.add(clip, "second.mp4", pin=True, origin="test")
    store.touch("first.mp4", now=1.0)
    store.max_bytes = first.size  # room for the pinned one only
    assert store.evict() == ["first.mp4"]
    assert store.get("first.mp4") is None and not store.path("first.mp4").exists()
    assert store.remove("second.mp4")
    assert store.get("second.mp4") is None and store.hot("second.mp4") is None
    assert store.assets() == [] and store.total_bytes == 0
    assert AssetStore(tmp_path / "cache", max_bytes=10**9).assets() == []
