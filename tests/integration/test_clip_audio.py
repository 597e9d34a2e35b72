"""Clip preparation keeps edged's own sound: a segment the daemon recorded with its sound card
(the sine stand-in) goes through the cache's preparation as every clip does (`AssetStore.add`,
behind `edged cache add` and replication) and comes out with an AAC track that decodes to the
tone and lasts as long as the pictures."""

from __future__ import annotations

import array
import json
import math
from pathlib import Path

import av
import pytest

from edged.cache.store import AssetStore
from tests.conftest import StartDaemon
from tests.integration.test_recording_audio import RECORDED, durations, settings

pytestmark = pytest.mark.integration

# The sine stand-in peaks at -18 dBFS (amplitude 1/8), -21 once spread from mono to stereo;
# silence (and an AAC track of it) is far below.
HEARD_DBFS = -30.0


def peak_dbfs(path: Path) -> float:
    """The loudest sample of the first audio track, in dB of full scale (planar float)."""
    loudest = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for plane in frame.planes:
                samples = array.array("f", bytes(plane)[: frame.samples * 4])
                loudest = max(loudest, max(map(abs, samples), default=0.0))
    return 20 * math.log10(loudest) if loudest else -math.inf


@pytest.mark.timeout(120)
def test_a_recorded_segment_keeps_its_sound_through_preparation(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(settings())
    assert daemon.data_dir is not None
    for _ in range(2):
        daemon.wait_for(RECORDED, timeout=30)
    assert daemon.stop(timeout=30) == 0
    segments = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    assert len(segments) >= 2
    assert json.loads(segments[1].with_suffix(".json").read_text())["audio_device"]
    store = AssetStore(tmp_path / "cache", max_bytes=10**9)
    for segment in segments:
        asset = store.add(segment, segment.name, pin=False, origin="recording")
        assert (asset.video_codec, asset.audio_codec, asset.transcoded) == ("h264", "aac", False)
        prepared = store.path(segment.name)
        video, audio = durations(prepared)  # both tracks, the audio one AAC, each decodes
        assert (video, audio) == durations(segment)  # nothing cut or added
        assert abs(audio - video) <= 0.040, (segment.name, video, audio)
        assert peak_dbfs(prepared) > HEARD_DBFS, segment.name  # the tone, not silence
