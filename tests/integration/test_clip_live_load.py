"""The clip jobs' pause gate on the daemon's own live load (`daemon.live_load`) over a real
MediaManager running and recording the test pattern: frames its capture thread drops at encode
(the decimation the thermal governor applies) and frames its recorder refuses (its queue full,
as when the disk falls behind) each close the gate, and it opens again after a quiet time.

The seams: the decimation is set as the governor would set it (a box cannot be made hot here),
and the recorder's queue limit is set to nothing (a disk cannot be made slow here). The drops
themselves are the pipeline's own, counted where the live side counts them.

Not tested here: a hardware encoder shared by a clip job and the live streams (no such encoder
on this machine); the gate's doubling quiet time (test_clip_jobstate) is what answers it."""

from __future__ import annotations

import time

import pytest

from edged.clips.jobstate import PauseGate
from edged.daemon import live_load
from edged.media.stream_plan import PATTERN_STREAM
from tests.integration.test_media import PatternBox, pattern_box
from tests.support import eventually

__all__ = ["pattern_box"]  # fixture

pytestmark = pytest.mark.integration

QUIET = 0.5


async def test_the_gate_closes_on_the_live_streams_encode_and_recorder_drops(
    pattern_box: PatternBox,
) -> None:
    manager = pattern_box.manager
    await pattern_box.keyframe_recorded()
    gate = PauseGate(quiet_seconds=QUIET)
    assert gate.reason(live_load(manager), time.monotonic()) is None

    entry = manager.streams[PATTERN_STREAM]
    entry.pipeline.decimation = 2  # every other frame dropped at encode, as when hot
    await eventually(
        lambda: (
            gate.reason(live_load(manager), time.monotonic())
            == "a live stream dropped frames at encode"
        ),
        20,
        "the gate closed by drops at encode",
    )
    entry.pipeline.decimation = 1
    await eventually(
        lambda: gate.reason(live_load(manager), time.monotonic()) is None, 20, "open again"
    )

    limit = entry.recorder._queue_limit
    entry.recorder._queue_limit = 0
    try:
        await eventually(
            lambda: (gate.reason(live_load(manager), time.monotonic()) or "").startswith(
                "a live stream's recorder or live output dropped frames"
            ),
            20,
            "the gate closed by the recorder's drops",
        )
    finally:
        entry.recorder._queue_limit = limit
    assert live_load(manager).output_drops > 0
    await eventually(
        lambda: gate.reason(live_load(manager), time.monotonic()) is None, 20, "open again"
    )
