"""Crash test: `edged uploads push` SIGKILLed again and again over one file; nothing is lost and
each restart sends again at most the parts that were in flight at the kill."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import tomli_w

from tests.integration.upload_support import MiB, object_sha256, s3, upstream_settings, write_random
from tests.s3server import S3Server
from tests.support import edged_command

pytestmark = pytest.mark.integration
__all__ = ["s3"]

PARTS = 20
PARALLEL = 2
KILLS = 10


def push_config(tmp_path: Path, server: S3Server, **upload: object) -> Path:
    config = tmp_path / "edged.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "node": {"name": "box", "event": "gala"},
                "upstream": upstream_settings(tmp_path, server),
                "upload": {"part_size": "5MiB", "parallel_parts": PARALLEL, **upload},
            }
        )
    )
    return config


def done_parts(journal: Path) -> int:
    if not journal.exists():
        return 0
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM parts").fetchone()[0])


@pytest.mark.timeout(300)
def test_sigkill_ten_times_loses_nothing(tmp_path: Path, s3: S3Server) -> None:
    """Each run lets one or two part PUTs through and is killed while the next is held by the
    server; ten kills whatever the machine's speed, then a run to the end."""
    seed = int(os.environ.get("EDGED_CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    source = tmp_path / "segment.mp4"
    sha = write_random(source, PARTS * 5 * MiB)
    config = push_config(tmp_path, s3)
    data_dir = tmp_path / "data"
    journal = data_dir / "uploads.sqlite3"
    command = edged_command(
        "uploads",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "push",
        str(source),
        "--stream",
        "cam1",
    )
    kills = 0
    resent_bound = 0
    let_through = 0  # part PUTs let through so far: fewer than PARTS until the last kill
    while True:
        if kills < KILLS:  # one or two PUTs go through, the next is held and the client killed
            allowance = min(rng.randint(1, 2), PARTS - 1 - let_through - (KILLS - 1 - kills))
            let_through += allowance
            s3.part_put_allowance = allowance
        else:
            s3.part_put_allowance = None
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if kills == KILLS:
            stdout, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, f"seed {seed}: {stdout}{stderr}"
            break
        deadline = time.monotonic() + 60
        while process.poll() is None and s3.held_puts == 0:
            assert time.monotonic() < deadline, f"seed {seed}: no part PUT after {kills} kills"
            time.sleep(0.005)
        assert process.poll() is None, f"seed {seed}: {process.communicate()}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
        s3.release_held()
        kills += 1
        # Every PUT is either a part the journal holds or one in flight at some kill; the
        # difference, counted at the last kill, bounds what may be sent again.
        resent_bound = s3.total_part_puts("segment.mp4") - done_parts(journal)

    assert "done: gala/box/cam1/" in stdout
    keys = [path for (path, _) in s3.part_puts if path.endswith("segment.mp4")]
    key = keys[0].split("/edged/", 1)[1]
    assert object_sha256(s3, key) == sha
    sent = s3.total_part_puts("segment.mp4")
    resent = sent - PARTS
    print(f"seed {seed}: {kills} kills, {sent} part PUTs for {PARTS} parts, {resent} re-sent")
    assert resent <= resent_bound, f"seed {seed}: {resent} re-sent, at most {resent_bound} expected"
    assert resent <= kills * PARALLEL
