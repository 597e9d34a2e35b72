"""One crash-safe write for every file edged replaces (#13): synced before it is renamed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edged.discovery import Peer, write_file_sd
from edged.fileio import write_atomically


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files os.fsync is called on (the real fsync still runs)."""
    names: list[str] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return names


def test_write_atomically_syncs_then_renames_and_leaves_no_temporary(
    tmp_path: Path, synced: list[str]
) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert synced == [".index.json.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index.json"]


def test_write_atomically_creates_a_new_file_with_the_mode_asked(tmp_path: Path) -> None:
    private = tmp_path / "counter"
    write_atomically(private, b"1\n", mode=0o600)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes() == b"1\n"


def test_the_file_sd_list_is_synced_before_it_replaces_the_old_one(
    tmp_path: Path, synced: list[str]
) -> None:
    path = tmp_path / "edged.json"
    peer = Peer(
        instance="box",
        node="box",
        event="default",
        version="1",
        addresses=("127.0.0.1",),
        port=8080,
        metrics_path="/metrics",
    )
    write_file_sd(path, [peer])
    assert synced == [".edged.json.tmp"]
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.1:8080"]
