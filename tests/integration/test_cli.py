"""The CLI as people type it: usage errors in one line, options after the verb, a closed pipe, and
writing commands that refuse to share a data dir with a running daemon."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edged.datalock import DataDirLock
from edged.upload.setup import JOURNAL_FILE
from tests.clips import make_clip
from tests.integration.test_upload_crash import push_config
from tests.integration.upload_support import object_sha256, s3, write_random
from tests.s3server import S3Server
from tests.support import edged_command, run_edged

pytestmark = pytest.mark.integration
__all__ = ["s3"]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback, no usage dump)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_push_usage_errors_are_one_line_and_queue_nothing(tmp_path: Path, s3: S3Server) -> None:
    config = push_config(tmp_path, s3)
    data_dir = tmp_path / "data"
    good = tmp_path / "good.mp4"
    write_random(good, 1000)
    common = ("--config", str(config), "--data-dir", str(data_dir))

    missing = run_edged("uploads", *common, "push", str(good), str(tmp_path / "missing.mp4"))
    assert missing.returncode == 2
    assert "missing.mp4: No such file or directory" in one_line_error(missing)

    directory = run_edged("uploads", *common, "push", str(tmp_path))
    assert directory.returncode == 2
    assert "is not a regular file" in one_line_error(directory)

    stream = run_edged("uploads", *common, "push", str(good), "--stream", "cam one")
    assert stream.returncode == 2
    assert "stream 'cam one' cannot be part of an object key" in one_line_error(stream)

    assert not (data_dir / JOURNAL_FILE).exists()  # the good file was not queued either


def test_a_name_with_spaces_uploads(tmp_path: Path, s3: S3Server) -> None:
    config = push_config(tmp_path, s3)
    source = tmp_path / "Opening Night.mp4"
    sha256 = write_random(source, 1000)
    pushed = run_edged(
        "uploads", "push", str(source), "--config", str(config), "--data-dir", str(tmp_path / "d")
    )
    assert pushed.returncode == 0, pushed.stderr
    (line,) = pushed.stdout.splitlines()
    assert line.startswith("done: gala/box/manual/") and line.endswith("/Opening Night.mp4")
    assert object_sha256(s3, line.removeprefix("done: ")) == sha256


def test_state_options_before_or_after_the_verb(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "promo.mp4")
    data_dir = str(tmp_path / "d")
    added = run_edged("cache", "add", str(clip), "--data-dir", data_dir, "--pin")
    assert added.returncode == 0, added.stderr
    for spelling in (
        ("cache", "list", "--json", "--data-dir", data_dir),
        ("cache", "--data-dir", data_dir, "list", "--json"),  # the verb's copy does not undo it
    ):
        listed = run_edged(*spelling)
        assert listed.returncode == 0, listed.stderr
        assert [asset["name"] for asset in json.loads(listed.stdout)["assets"]] == ["promo.mp4"]
    missing = run_edged("cache", "add", str(tmp_path / "none.mp4"), "--data-dir", data_dir)
    assert missing.returncode == 2
    assert "none.mp4: No such file or directory" in one_line_error(missing)


@pytest.mark.parametrize(
    "args", [("uploads",), ("uploads", "--json"), ("config", "show")], ids=" ".join
)
def test_a_reader_that_leaves_is_no_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """`edged uploads | head -1`: head is gone before edged writes; edged ends quietly (141)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*edged_command(*args)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "EDGED_DATA_DIR": str(tmp_path / "d")},
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_writing_commands_refuse_a_data_dir_the_daemon_holds(tmp_path: Path, s3: S3Server) -> None:
    config = push_config(tmp_path, s3)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    source = tmp_path / "one.mp4"
    write_random(source, 1000)
    clip = make_clip(tmp_path / "promo.mp4")
    common = ("--config", str(config), "--data-dir", str(data_dir))
    daemon = DataDirLock(data_dir)  # what a running `edged run` holds (a flock of this process)
    daemon.acquire()
    try:
        pushed = run_edged("uploads", "push", str(source), *common)
        added = run_edged("cache", "add", str(clip), *common)
    finally:
        daemon.release()

    assert pushed.returncode == 3
    assert one_line_error(pushed) == (
        f"edged: data dir {data_dir} is in use by the edged daemon (PID {os.getpid()}); "
        "stop the daemon or use its API: POST /api/v1/uploads"
    )
    assert added.returncode == 3
    assert one_line_error(added).endswith("use its API: PUT /api/v1/assets/NAME")
    assert not (data_dir / JOURNAL_FILE).exists()
    assert not (data_dir / "cache").exists()

    again = run_edged("uploads", "push", str(source), *common)  # the lock was the only reason
    assert again.returncode == 0, again.stderr
