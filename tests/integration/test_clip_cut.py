"""Cutting clips out of segments a real daemon recorded (the lavfi test pattern with its sound),
through the real worker process: an original copied across a segment boundary, vertical fill and
crop at 9:16, frame-accurate; a deleted source and a full disk fail with their reason and leave
nothing under the clip's name."""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import pytest

from edged.clips.worker import CutSpec
from tests.support import DaemonProcess, loopback_config, write_config

pytestmark = pytest.mark.integration

FPS = 15
GOP = 0.5
RECORDED = re.compile(r"recorded \S+\.mp4: \d+ frames")
SETTINGS: dict[str, dict[str, object]] = {
    "mdns": {"enabled": False},
    "media": {
        "pattern_size": "320x240",
        "pattern_fps": FPS,
        "segment_seconds": 2.0,
        "gop_seconds": GOP,
        "record_test_pattern": True,
        "audio_stand_in": "sine=frequency=440:sample_rate=48000",
    },
}


def record(tmp: Path, segments: int) -> list[dict[str, Any]]:
    """Run a daemon until it has closed `segments` segments; their sidecars, in order."""
    config = write_config(tmp / "box.toml", loopback_config("box", SETTINGS))
    daemon = DaemonProcess(
        ["--config", str(config), "--data-dir", str(tmp / "data")], data_dir=tmp / "data"
    )
    try:
        daemon.wait_ready()
        for _ in range(segments):
            daemon.wait_for(RECORDED, timeout=30)
        assert daemon.stop(timeout=30) == 0
    finally:
        daemon.kill()
    sidecars = sorted((tmp / "data" / "spool" / "test-pattern").glob("*.json"))
    return [json.loads(path.read_text()) for path in sidecars]


# One recording for the session: this module and test_clip_job_queue (which imports the fixture,
# so each module has its own definition of it) only read the segments and their sidecars.
_RECORDINGS: dict[int, list[dict[str, Any]]] = {}


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if 3 not in _RECORDINGS:
        _RECORDINGS[3] = record(tmp_path_factory.mktemp("recorded"), 3)
    return _RECORDINGS[3]


def moment(sidecar: dict[str, Any], key: str) -> float:
    return datetime.fromisoformat(sidecar[key]).timestamp()


def spec(
    sidecars: list[dict[str, Any]], start: float, end: float, target: Path, **options: Any
) -> CutSpec:
    sources = tuple((s["path"], moment(s, "start")) for s in sidecars)
    return CutSpec(options.pop("variant", "original"), sources, start, end, str(target), **options)


def run_worker(cut: CutSpec, **popen: Any) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-m", "edged.clips.worker"],
        input=cut.to_json(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def decoded(path: Path) -> tuple[int, float, int, int, int]:
    """(video frames, audio seconds, width, height, sample rate) decoded from a clip."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        width, height = video.codec_context.width, video.codec_context.height
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        rate = audio.codec_context.sample_rate
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return frames, samples / rate, width, height, rate


def frames_shown(sidecars: list[dict[str, Any]], start: float, end: float) -> int:
    """How many recorded frames are shown in [start, end), from the segments' own timestamps."""
    count = 0
    for sidecar in sidecars:
        with av.open(sidecar["path"]) as container:
            for packet in container.demux(video=0):
                if packet.pts is not None and packet.size:
                    shown = moment(sidecar, "start") + float(packet.pts * packet.time_base)
                    count += start - 1e-6 <= shown < end
    return count


def test_an_original_is_copied_across_a_segment_boundary_with_its_sound(
    recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    first, second = recorded[0], recorded[1]
    start, end = moment(first, "start") + 1.2, moment(second, "start") + 1.0
    target = tmp_path / "original.mp4"
    code, lines = run_worker(spec([first, second], start, end, target))
    assert code == 0, lines
    result = lines[-1]["result"]
    assert result["encoder"] == "copy"
    # Copying starts at the keyframe at or before the start: at most one GOP early.
    assert start - GOP <= result["start"] <= start
    frames, sound, width, height, _ = decoded(target)
    assert (width, height) == (320, 240)
    assert frames == result["frames"] == frames_shown([first, second], result["start"], end)
    assert abs(frames / FPS - (end - start)) <= GOP + 1 / FPS
    assert abs(sound - frames / FPS) <= 0.05  # both tracks, as long as each other
    assert [line for line in lines if "progress" in line]


@pytest.mark.parametrize("mode", ["fill", "crop"])
def test_a_vertical_is_9_16_and_frame_accurate(
    recorded: list[dict[str, Any]], tmp_path: Path, mode: str
) -> None:
    start, end = moment(recorded[0], "start") + 1.1, moment(recorded[2], "start") + 0.3
    target = tmp_path / f"{mode}.mp4"
    code, lines = run_worker(spec(recorded, start, end, target, variant="vertical", mode=mode))
    assert code == 0, lines
    assert lines[-1]["result"]["encoder"] == "libx264"
    frames, sound, width, height, rate = decoded(target)
    assert (width, height) == (240, 426)
    assert frames == frames_shown(recorded, start, end)  # frame-accurate at both ends
    assert rate == 48000
    assert abs(sound - frames / FPS) <= 0.05


def test_a_deleted_source_fails_the_cut_with_the_reason(
    recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    gone = tmp_path / "gone.mp4"
    shutil.copy(recorded[1]["path"], gone)
    sidecars = [recorded[0], {**recorded[1], "path": str(gone)}]
    gone.unlink()
    start, end = moment(recorded[0], "start") + 0.5, moment(recorded[1], "start") + 1.0
    target = tmp_path / "clip.mp4"
    code, lines = run_worker(spec(sidecars, start, end, target))
    assert code == 1
    assert lines[-1] == {
        "error": "source segment gone.mp4 was deleted before the cut",
        "kind": "gone",
    }
    assert list(tmp_path.iterdir()) == []  # no clip, no part


def _small_disk() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.parametrize("variant", ["original", "vertical"])
def test_a_full_disk_fails_the_cut_and_leaves_nothing(
    recorded: list[dict[str, Any]], tmp_path: Path, variant: str
) -> None:
    """A file size limit stands in for the full disk: writes fail past 64 KiB (EFBIG)."""
    start, end = moment(recorded[0], "start"), moment(recorded[1], "start") + 1.5
    target = tmp_path / "clip.mp4"
    code, lines = run_worker(
        spec(recorded[:2], start, end, target, variant=variant), preexec_fn=_small_disk
    )
    assert code == 1
    assert lines[-1] == {
        "error": "the disk is full: the clip could not be written",
        "kind": "space",
    }
    assert list(tmp_path.iterdir()) == []
