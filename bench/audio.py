"""A stream's sound over a long run: A/V drift in the recordings, and the CPU its audio costs.

Runs edged's own pipeline for --seconds (default 10 minutes): the test pattern (320x240 at 15
fps, libx264) with its sound from the lavfi stand-in (`sine`, paced by `arealtime` as a sound
card delivers), recorded in segments of --segment-seconds, as the daemon records a camera.

- Drift, from the recorded segments: each one's audio duration (decoded samples) minus its video
  duration (decoded frames / fps), and their running sum: the segments follow each other, so
  the sum at the last segment is where the sound ends against the pictures after the whole run
  (how far the audio track has drifted from the video's clock). The segment the stop cut short
  is listed apart. Target: at most 40 ms (issue #15). Samples the timeline had to insert or drop
  to keep the sound on the clock are printed too.
- Drift, live: each packet's timestamp against the monotonic clock when it reaches the fan-out.
  Over windows of --window seconds the least (arrival - end of its timestamp) of the audio and of
  the video packets is the pipeline's fixed delay for each; their difference moving over the run
  is the sound's stamps drifting from the pictures' (independent of where the recorder cuts).
- CPU: the audio thread's CPU time (capture, resample, re-buffer, AAC-LC 128 kb/s 48 kHz stereo;
  the stand-in's sine generation included, which a sound card does not cost) as a share of one
  core. Target: at most 5 % (issue #15). References in the same run: Debian's `ffmpeg` CLI
  encoding the same paced sine to AAC at the same rate and bitrate in a child process (ratio =
  edged / ffmpeg; its FFmpeg is Debian's, PyAV's wheel bundles its own), and the stand-in alone
  (the same graph read by a thread that does nothing else), which a sound card does not cost.

- --period: samples per buffer the stand-in delivers (default 1024, 21 ms). FFmpeg's ALSA input
  reads a card's smallest period, about 1 ms (48) on USB audio: `--period 48` costs what such a
  card would (the stand-in's own cost, larger too, is measured and left out the same way).

Usage: python bench/audio.py [--seconds 600] [--segment-seconds 60] [--window 10] [--period 1024]
       (needs Linux's /proc for the thread's CPU; the ffmpeg reference needs apt-get install ffmpeg)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
from prometheus_client import CollectorRegistry

from edged.media.audio import AudioSpec, paced_graph
from edged.media.encoders import Encoder, EncoderSettings
from edged.media.packets import EncodedPacket
from edged.media.pipeline import StreamPipeline
from edged.media.recorder import Recorder, SegmentIdentity
from edged.media.sources import Source, pattern
from edged.metrics import StreamMetrics

SINE = "sine=frequency=440:sample_rate=48000:samples_per_frame={period}"
RATE = 48_000
BITRATE = 128_000
WIDTH, HEIGHT, FPS = 320, 240, 15
STREAM = "bench"
DRIFT_TARGET_MS = 40.0
CPU_TARGET_PERCENT = 5.0


@dataclass(frozen=True)
class SegmentTiming:
    name: str
    video: float  # seconds: decoded frames / fps
    audio: float  # seconds: decoded samples / rate

    @property
    def difference_ms(self) -> float:
        return 1000 * (self.audio - self.video)


class Clockwatch:
    """An output of the pipeline that notes (monotonic arrival, end of the timestamp in seconds)
    of every video and audio packet reaching the fan-out."""

    name = "clockwatch"

    def __init__(self) -> None:
        self.video: list[tuple[float, float]] = []
        self.audio: list[tuple[float, float]] = []

    def offer(self, packet: EncodedPacket, extradata: bytes) -> bool:
        self.video.append((time.monotonic(), ends(packet)))
        return True

    def offer_audio(self, packet: EncodedPacket, extradata: bytes) -> bool:
        self.audio.append((time.monotonic(), ends(packet)))
        return True

    def end_audio(self) -> None:
        pass

    def close(self) -> None:
        pass


def ends(packet: EncodedPacket) -> float:
    return float((packet.pts + packet.duration) * packet.time_base)


def least_delays(notes: list[tuple[float, float]], start: float, window: float) -> dict[int, float]:
    """Per window of arrival time (its index from `start`): the least arrival - timestamp."""
    least: dict[int, float] = {}
    for arrived, stamp in notes:
        index = int((arrived - start) // window)
        least[index] = min(least.get(index, float("inf")), arrived - stamp)
    return least


def report_live(watch: Clockwatch, window: float) -> None:
    start = min(watch.video[0][0], watch.audio[0][0])
    video = least_delays(watch.video, start, window)
    audio = least_delays(watch.audio, start, window)
    whole = sorted(set(video) & set(audio))[1:-1]  # the first and last windows are partial
    if len(whole) < 2:
        print(f"live drift: too short a run for two whole {window:.0f} s windows")
        return
    offsets = [1000 * (audio[index] - video[index]) for index in whole]
    moved = [offset - offsets[0] for offset in offsets]
    print(
        f"live: the sound reaches the fan-out {offsets[0]:.1f} ms behind the pictures of the same "
        f"time in the first whole {window:.0f} s window, {offsets[-1]:.1f} ms in the last: moved "
        f"{moved[-1]:+.1f} ms over {len(whole)} windows (most {max(moved, key=abs):+.1f} ms); "
        f"target <= {DRIFT_TARGET_MS:.0f} ms"
    )


def timing(path: Path) -> SegmentTiming:
    """A segment's video and audio durations, each from its decoded frames."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    samples = 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            samples = sum(frame.samples for frame in container.decode(audio=0))
    return SegmentTiming(path.name, frames / FPS, samples / RATE)


def thread_cpu_seconds(name: str) -> float:
    """CPU time (user + system) of this process' thread called `name`, from /proc."""
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StandIn(threading.Thread):
    """The stand-in alone: the same paced graph read for `seconds`, nothing done with it."""

    def __init__(self, seconds: float, graph: str) -> None:
        super().__init__(name="stand-in-alone", daemon=True)
        self.seconds = seconds
        self.graph = graph
        self.cpu = 0.0

    def run(self) -> None:
        container = av.open(self.graph, format="lavfi")
        ends = time.monotonic() + self.seconds
        for _ in container.decode(audio=0):
            if time.monotonic() >= ends:
                break
        container.close()
        self.cpu = time.thread_time()


def ffmpeg_reference(seconds: float, work: Path, graph: str) -> subprocess.Popen[bytes] | None:
    """The ffmpeg CLI encoding the same paced sine to AAC, started now (None: no ffmpeg)."""
    if shutil.which("ffmpeg") is None:
        return None
    command = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        graph,
        "-t",
        str(seconds),
        "-ac",
        "2",
        "-ar",
        str(RATE),
        "-c:a",
        "aac",
        "-b:a",
        str(BITRATE),
        "-f",
        "mp4",
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof",
        str(work / "ffmpeg.mp4"),
    ]
    return subprocess.Popen(command)


async def record(
    seconds: float, segment_seconds: float, work: Path, watch: Clockwatch, graph: str
) -> tuple[float, float, dict[str, int]]:
    """Run the pipeline for `seconds`; (audio thread CPU s, wall s, samples dropped by stage)."""
    spec = AudioSpec("lavfi", graph, RATE, BITRATE)
    settings = EncoderSettings(WIDTH, HEIGHT, FPS, 500_000, gop_seconds=1.0)
    recorder = Recorder(
        STREAM,
        work,
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        segment_seconds=segment_seconds,
        identity=SegmentIdentity,
        on_segment=lambda segment: None,
        audio=spec,
    )
    pipeline = StreamPipeline(
        STREAM,
        lambda: Source(pattern(WIDTH, HEIGHT, FPS)),
        lambda: Encoder("libx264", settings),
        StreamMetrics(CollectorRegistry()),
        audio=spec,
    )
    pipeline.add_output(recorder)
    pipeline.add_output(watch)
    wall = time.perf_counter()
    pipeline.start()
    await asyncio.sleep(seconds)
    cpu = thread_cpu_seconds(f"audio-{STREAM}")
    wall = time.perf_counter() - wall
    await pipeline.stop()
    if pipeline.audio_failure:
        raise SystemExit(f"the sound failed: {pipeline.audio_failure}")
    return cpu, wall, dict(pipeline.audio_dropped)


def report_drift(timings: list[SegmentTiming]) -> None:
    *closed, last = timings
    print(f"{'segment':40} {'video s':>9} {'audio s':>9} {'a-v ms':>8} {'sum ms':>8}")
    total = 0.0
    for segment in closed:
        total += segment.difference_ms
        print(
            f"{segment.name:40} {segment.video:9.3f} {segment.audio:9.3f} "
            f"{segment.difference_ms:+8.1f} {total:+8.1f}"
        )
    print(
        f"{last.name:40} {last.video:9.3f} {last.audio:9.3f} {last.difference_ms:+8.1f} "
        f"{total + last.difference_ms:+8.1f}  (cut short by the stop)"
    )
    worst = max((abs(s.difference_ms) for s in closed), default=0.0)
    print(
        f"A/V drift over {sum(s.video for s in timings):.0f} s: the sound ends {total:+.1f} ms "
        f"from the pictures after {len(closed)} segments closed by a keyframe (worst segment "
        f"{worst:.1f} ms); with the stopped one {total + last.difference_ms:+.1f} ms; "
        f"target <= {DRIFT_TARGET_MS:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--segment-seconds", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--period", type=int, default=1024)
    args = parser.parse_args()
    graph = paced_graph(SINE.format(period=args.period))
    with tempfile.TemporaryDirectory(prefix="edged-audio-bench-") as directory:
        work = Path(directory)
        reference = ffmpeg_reference(args.seconds, work, graph)
        stand_in = StandIn(args.seconds, graph)
        stand_in.start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        watch = Clockwatch()
        cpu, wall, dropped = asyncio.run(
            record(args.seconds, args.segment_seconds, work, watch, graph)
        )
        timings = [timing(path) for path in sorted((work / STREAM).glob("*.mp4"))]
        if reference is not None:
            reference.wait()
        stand_in.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report_drift(timings)
    report_live(watch, args.window)
    print(f"samples inserted or dropped to keep the sound on the clock: {dropped or 'none'}")
    share = 100 * cpu / wall
    alone = 100 * stand_in.cpu / args.seconds
    line = (
        f"CPU ({args.period} samples a buffer): audio thread {share:.2f} % of one core over "
        f"{wall:.0f} s, of which the stand-in "
        f"alone {alone:.2f} %: edged's share {share - alone:.2f} % (target <= "
        f"{CPU_TARGET_PERCENT:.0f} %)"
    )
    if reference is not None:
        theirs = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        theirs_share = 100 * theirs / args.seconds
        line += f"; ffmpeg CLI {theirs_share:.2f} %: ratio {share / max(theirs_share, 1e-9):.2f}"
    print(line)


if __name__ == "__main__":
    main()
