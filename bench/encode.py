"""edged's stream pipeline against the ffmpeg CLI, same input, same libx264 settings.

For 720p30 and 1080p30 the lavfi test pattern is encoded (and muxed to fragmented MP4) twice:
by edged's pipeline (capture thread, encoder thread, recorder) in this process, and by Debian's
`ffmpeg` in a child process. Paced runs (the `realtime` filter, as a camera would deliver) give
CPU seconds per frame and drops; unpaced runs give the real-time factor (how many times faster
than real time each can go).

Usage: python bench/encode.py [--seconds 20]      (needs Debian's ffmpeg: apt-get install ffmpeg)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from edged.media.encoders import Encoder, EncoderSettings, encoder_options  # noqa: E402
from edged.media.pipeline import StreamPipeline  # noqa: E402
from edged.media.recorder import Recorder, SegmentIdentity  # noqa: E402
from edged.media.sources import Source, SourceSpec  # noqa: E402
from edged.metrics import StreamMetrics  # noqa: E402

BITRATE = 3_000_000
FPS = 30


@dataclass
class Run:
    frames: int
    cpu_seconds: float
    wall_seconds: float
    drops: int

    @property
    def cpu_per_frame_ms(self) -> float:
        return 1000 * self.cpu_seconds / max(self.frames, 1)

    @property
    def realtime_factor(self) -> float:
        return self.frames / FPS / self.wall_seconds


def graph(width: int, height: int, paced: bool) -> str:
    return f"testsrc2=size={width}x{height}:rate={FPS}" + (",realtime" if paced else "")


async def edged_run(width: int, height: int, seconds: float, paced: bool, work: Path) -> Run:
    settings = EncoderSettings(width, height, FPS, BITRATE, 1.0)
    frames_wanted = int(seconds * FPS)
    spec = SourceSpec(
        "pattern",
        graph(width, height, paced) + f",trim=end_frame={frames_wanted}",
        width,
        height,
        FPS,
    )
    recorder = Recorder(
        "bench",
        work,
        width=width,
        height=height,
        fps=FPS,
        segment_seconds=3600,
        identity=SegmentIdentity,
        on_segment=lambda segment: None,
    )
    pipeline = StreamPipeline(
        "bench",
        lambda: Source(spec),
        lambda: Encoder("libx264", settings),
        StreamMetrics(CollectorRegistry()),
    )
    pipeline.add_output(recorder)
    cpu, wall = time.process_time(), time.perf_counter()
    pipeline.start()
    await pipeline.wait_ended()
    await pipeline.stop()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    counts = pipeline.counts
    drops = counts.dropped_capture + counts.dropped_encode + counts.dropped_output
    return Run(counts.encoded, cpu, wall, drops)


def ffmpeg_run(width: int, height: int, seconds: float, paced: bool, work: Path) -> Run:
    options = encoder_options("libx264", EncoderSettings(width, height, FPS, BITRATE, 1.0))
    command = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        graph(width, height, paced),
        "-frames:v",
        str(int(seconds * FPS)),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        str(BITRATE),
        "-preset",
        options["preset"],
        "-tune",
        options["tune"],
        "-bf",
        "0",
        "-sc_threshold",
        "0",
        "-forced-idr",
        "1",
        "-g",
        str(FPS * 10),
        "-force_key_frames",
        "expr:gte(t,n_forced*1)",
        "-flags",
        "+global_header",
        "-f",
        "mp4",
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof",
        str(work / f"ffmpeg-{width}.mp4"),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(int(seconds * FPS), cpu, wall, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg not found: apt-get install ffmpeg")
    print(
        f"libx264 at {BITRATE // 1000} kbit/s, {FPS} fps, GOP 1 s, fragmented MP4 output; "
        f"{args.seconds:.0f} s paced, {args.seconds:.0f} s unpaced"
    )
    print(
        f"{'size':9} {'encoder':7} {'CPU ms/frame':>13} {'ratio':>6} {'drops':>6} "
        f"{'realtime x':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for width, height in ((1280, 720), (1920, 1080)):
            ours = asyncio.run(edged_run(width, height, args.seconds, True, work))
            theirs = ffmpeg_run(width, height, args.seconds, True, work)
            ours_fast = asyncio.run(edged_run(width, height, args.seconds, False, work))
            theirs_fast = ffmpeg_run(width, height, args.seconds, False, work)
            ratio = ours.cpu_per_frame_ms / theirs.cpu_per_frame_ms
            size = f"{height}p{FPS}"
            print(
                f"{size:9} {'edged':7} {ours.cpu_per_frame_ms:13.2f} {ratio:6.2f} "
                f"{ours.drops:6d} {ours_fast.realtime_factor:11.2f}"
            )
            print(
                f"{size:9} {'ffmpeg':7} {theirs.cpu_per_frame_ms:13.2f} {1:6.2f} "
                f"{theirs.drops:6d} {theirs_fast.realtime_factor:11.2f}"
            )
    print(
        "ratio = edged CPU per frame / ffmpeg CPU per frame (target <= 1.10); "
        "drops target 0 at 720p30"
    )


if __name__ == "__main__":
    main()
