"""Footage retention and a clock step (issue 21 item 4): retention acts on free disk, never on
age, so a wall clock that steps 40 days forward (or back) deletes nothing by itself."""

from __future__ import annotations

import time

import pytest

from edged.media.retention import SpoolFile, plan

DAY = 86400.0
NOW = time.time()


@pytest.mark.parametrize("step", [40 * DAY, -40 * DAY, 50 * 365 * DAY])
def test_a_clock_step_alone_deletes_no_footage(step: float) -> None:
    files = [
        SpoolFile(path="a.mp4", size=10, mtime=NOW, uploaded=True),
        SpoolFile(path="b.mp4", size=10, mtime=NOW + step, uploaded=False),
    ]
    result = plan(files, free_bytes=1000, min_free_bytes=100, delete_unuploaded=False)
    assert result.delete == ()
    assert not result.stop_recording


def test_a_step_never_makes_footage_not_uploaded_go_first() -> None:
    """Short of disk, a recording stamped before a step looks older; only uploaded ones go."""
    files = [
        SpoolFile(path="new.mp4", size=10, mtime=NOW, uploaded=True),
        SpoolFile(path="stamped-before-step.mp4", size=10, mtime=NOW - 40 * DAY, uploaded=False),
    ]
    result = plan(files, free_bytes=0, min_free_bytes=10, delete_unuploaded=False)
    assert [file.path for file in result.delete] == ["new.mp4"]
