"""Live HLS for a crowd: N players follow the playlist; stalls, margins, and the daemon's CPU.

One edged daemon on loopback runs the test pattern (1280x720 30 fps, GOP 1 s, so 1 s segments).
First the reference: the same daemon with no viewer for --idle-seconds (20 s). Then N players (200),
each an asyncio task with its own aiohttp session (connection limit off) in this process, start at
random moments within 1 s and each plays for --seconds (60 s) as a native HLS player does (RFC
8216): GET index.m3u8 and its init, start from the live edge, fetch each new segment once, in order,
and reload the playlist a target duration after the last load began if it changed, half of one if it
did not (6.3.4). The live edge is, by default, the last segment that starts at least three target
durations before the playlist's end (6.3.3; hls.js's default of three segments back is the same
here); `--start last` joins at the last segment instead (a lower-latency player): its reloads are in
phase with the segment clock, so each new segment arrives just as its predecessor ends and stalls
there measure that join policy more than the server.

Playback starts when a player's first segment has arrived; segment k's playback ends at that start
plus the EXTINF of the segments up to k. A stall is segment k+1 not fully arrived by then (playback
then resumes, as a player's would, when it arrives, and the timeline shifts). The margin of a
segment is how long before its predecessor ended it arrived. Printed: players, seconds, segments
served, segments skipped (fell out of the window before fetched), stalls (target 0), the margin's
min/p5/p50/p95/max, request times, HTTP errors; the daemon's CPU (all its threads and any child
process, cpu_times over the run) as % of one core with the crowd and with no viewer, the ratio and
the increment per player; and this process's CPU (the clients share the same cores) with its event
loop's worst lag, so a stall caused by the clients shows as such.

Usage: python bench/hls_crowd.py [--players 200] [--seconds 60] [--idle-seconds 20]
                                 [--start rfc|last]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from tests.support import launch_edged, loopback_config  # noqa: E402

STREAM = "/live/test-pattern"
START_SPREAD = 1.0  # seconds over which the players start
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Segment:
    sequence: int
    duration: float
    uri: str


@dataclass(frozen=True)
class Playlist:
    target_duration: float
    segments: tuple[Segment, ...]
    init: str = ""  # the EXT-X-MAP URI (init-<run>.mp4)


def parse_playlist(text: str) -> Playlist:
    """The media playlist's target duration and segments (sequence, EXTINF, URI)."""
    target, sequence, duration = 0.0, 0, 0.0
    segments: list[Segment] = []
    init = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('#EXT-X-MAP:URI="'):
            init = line.removeprefix('#EXT-X-MAP:URI="').split('"', 1)[0]
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line and not line.startswith("#"):
            segments.append(Segment(sequence, duration, line))
            sequence += 1
    return Playlist(target, tuple(segments), init)


def live_start(playlist: Playlist, start: str) -> int:
    """The sequence a joining player fetches first: the last segment, or (RFC 8216 6.3.3) the
    last one starting at least three target durations before the playlist's end."""
    if start == "last":
        return playlist.segments[-1].sequence
    remaining = 0.0
    for segment in reversed(playlist.segments):
        remaining += segment.duration
        if remaining >= 3 * playlist.target_duration:
            return segment.sequence
    return playlist.segments[0].sequence


@dataclass
class Timeline:
    """One player's playback clock: when each segment's playback ends, and the stalls."""

    ends: float | None = None
    stalls: int = 0

    def arrived(self, at: float, duration: float) -> float | None:
        """Note a segment fully arrived at `at`; its margin (None for the first)."""
        if self.ends is None:
            self.ends = at + duration
            return None
        margin = self.ends - at
        if margin < 0:
            self.stalls += 1
            self.ends = at  # playback resumes when the segment is there
        self.ends += duration
        return margin


@dataclass
class Tally:
    """What the crowd saw, pooled over players."""

    served: int = 0
    skipped: int = 0
    stalls: int = 0
    margins: list[float] = field(default_factory=list)
    playlist_times: list[float] = field(default_factory=list)
    segment_times: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    loop_lag: float = 0.0  # the clients' worst event-loop lateness


async def fetch(
    session: aiohttp.ClientSession, url: str, kind: str, tally: Tally
) -> tuple[bytes, float] | None:
    """The body and the seconds it took, or None with the error counted."""
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                tally.errors[f"{kind} HTTP {response.status}"] += 1
                return None
    except (aiohttp.ClientError, TimeoutError) as error:
        tally.errors[f"{kind} {type(error).__name__}"] += 1
        return None
    return body, time.monotonic() - started


async def load_playlist(session: aiohttp.ClientSession, base: str, tally: Tally) -> Playlist | None:
    got = await fetch(session, base + "/index.m3u8", "playlist", tally)
    if got is None:
        return None
    tally.playlist_times.append(got[1])
    playlist = parse_playlist(got[0].decode())
    return playlist if playlist.segments else None


async def fetch_new(
    session: aiohttp.ClientSession,
    base: str,
    playlist: Playlist,
    following: int,
    timeline: Timeline,
    tally: Tally,
) -> int:
    """Fetch, in order, the segments from sequence `following` on; the next one to follow."""
    for segment in playlist.segments:
        if segment.sequence < following:
            continue
        tally.skipped += segment.sequence - following
        following = segment.sequence + 1
        got = await fetch(session, f"{base}/{segment.uri}", "segment", tally)
        if got is None:
            continue
        tally.served += 1
        tally.segment_times.append(got[1])
        margin = timeline.arrived(time.monotonic(), segment.duration)
        if margin is not None:
            tally.margins.append(margin)
    return following


async def play(base: str, delay: float, seconds: float, start: str, tally: Tally) -> None:
    """One player: join after `delay`, follow the live playlist for `seconds`."""
    await asyncio.sleep(delay)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loaded_at = time.monotonic()
        until = loaded_at + seconds
        playlist = await load_playlist(session, base, tally)
        if (
            playlist is None
            or await fetch(session, f"{base}/{playlist.init}", "init", tally) is None
        ):
            return
        timeline = Timeline()
        following = live_start(playlist, start)
        while True:
            before = following
            following = await fetch_new(session, base, playlist, following, timeline, tally)
            wait = playlist.target_duration * (1.0 if following != before else 0.5)
            pause = loaded_at + wait - time.monotonic()
            if loaded_at + wait >= until:
                break
            await asyncio.sleep(max(0.0, pause))
            loaded_at = time.monotonic()
            playlist = await load_playlist(session, base, tally) or playlist
        tally.stalls += timeline.stalls


async def loop_lag(stop: asyncio.Event, every: float = 0.05) -> float:
    """The worst lateness of this event loop's wake-ups until `stop` (client saturation)."""
    worst = 0.0
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(every)
        worst = max(worst, time.monotonic() - asked - every)
    return worst


async def crowd(base: str, players: int, seconds: float, start: str, seed: int) -> Tally:
    """`players` players started at random moments within START_SPREAD; their pooled tally."""
    rng = random.Random(seed)
    tally = Tally()
    stop = asyncio.Event()
    lag = asyncio.create_task(loop_lag(stop))
    delays = sorted(rng.uniform(0, START_SPREAD) for _ in range(players))
    await asyncio.gather(*(play(base, d, seconds, start, tally) for d in delays))
    stop.set()
    tally.loop_lag = await lag
    return tally


async def wait_for_window(base: str, target_segments: int = 6, limit: float = 60) -> Playlist:
    """The playlist once it holds `target_segments` segments (a full window to join)."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(base + "/index.m3u8") as response:
                if response.status == 200:
                    playlist = parse_playlist(await response.text())
                    if len(playlist.segments) >= target_segments:
                        return playlist
            await asyncio.sleep(0.25)
    raise RuntimeError(f"no HLS window of {target_segments} segments within {limit} s")


def cpu_seconds(process: psutil.Process, children: bool) -> float:
    """User + system seconds of a process (all its threads), and of its children if asked."""
    times = process.cpu_times()
    total = times.user + times.system
    for child in process.children(recursive=True) if children else ():
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


@contextlib.contextmanager
def measured(daemon: psutil.Process, into: dict[str, float]) -> Iterator[None]:
    """The daemon's CPU (with its children) and this process's (without: the daemon is one)
    over the block, each as a share of one core (1.0 = one core busy)."""
    processes = {"edged": (daemon, True), "clients": (psutil.Process(), False)}
    before = {name: cpu_seconds(*process) for name, process in processes.items()}
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    for name, process in processes.items():
        into[name] = (cpu_seconds(*process) - before[name]) / elapsed
    into["elapsed"] = elapsed


def start_daemon(work: Path) -> tuple[subprocess.Popen[str], str]:
    config = work / "edged.toml"
    config.write_text(
        loopback_config(
            "bench",
            {
                "mdns": {"enabled": False},
                "media": {"pattern_size": "1280x720", "pattern_fps": 30, "gop_seconds": 1.0},
            },
        )
    )
    return launch_edged(config, work / "data")


def raise_fd_limit(players: int) -> None:
    """Each player holds a socket: the soft open-file limit up to what the crowd needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * players + 256
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SystemExit(
            f"open-file hard limit {hard} is under the {wanted} {players} players need"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> tuple[Playlist, Tally, dict[str, float], dict[str, float]]:
    """The reference (no viewer) then the crowd, on one daemon; the figures of each."""
    idle: dict[str, float] = {}
    loaded: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        process, base = start_daemon(Path(tmp))
        try:
            base += STREAM
            playlist = asyncio.run(wait_for_window(base))
            daemon = psutil.Process(process.pid)
            with measured(daemon, idle):
                time.sleep(args.idle_seconds)
            with measured(daemon, loaded):
                tally = asyncio.run(crowd(base, args.players, args.seconds, args.start, args.seed))
        finally:
            process.terminate()
            process.wait(timeout=20)
    return playlist, tally, idle, loaded


def report(
    args: argparse.Namespace,
    playlist: Playlist,
    tally: Tally,
    idle: dict[str, float],
    loaded: dict[str, float],
) -> None:
    durations = [segment.duration for segment in playlist.segments]
    start = "the last segment" if args.start == "last" else "3 target durations back (RFC 8216)"
    print(
        f"live HLS crowd: {args.players} players x {args.seconds:g} s each, started within "
        f"{START_SPREAD:g} s, joining at {start}; 1280x720 30 fps, segments "
        f"{statistics.median(durations):.3f} s, target duration {playlist.target_duration:g} s, "
        f"loopback, seed {args.seed}"
    )
    print(
        f"segments served {tally.served}, skipped {tally.skipped}; stalls {tally.stalls} (target 0)"
    )
    margins = tally.margins
    print(
        f"margin (arrival before the predecessor's end), s: min {min(margins, default=0):.3f} "
        f"p5 {percentile(margins, 0.05):.3f} p50 {percentile(margins, 0.5):.3f} "
        f"p95 {percentile(margins, 0.95):.3f} max {max(margins, default=0):.3f}"
    )
    for kind, times in (("playlist", tally.playlist_times), ("segment", tally.segment_times)):
        print(
            f"{kind} requests {len(times)}: p50 {1000 * percentile(times, 0.5):.1f} ms "
            f"p95 {1000 * percentile(times, 0.95):.1f} ms max {1000 * max(times, default=0):.1f} ms"
        )
    errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(tally.errors.items()))
    print(f"HTTP errors: {errors or 'none'}")
    print(f"the clients' event loop woke at worst {1000 * tally.loop_lag:.0f} ms late")
    report_cpu(args.players, idle, loaded)


def report_cpu(players: int, idle: dict[str, float], loaded: dict[str, float]) -> None:
    increment = (loaded["edged"] - idle["edged"]) / players
    print(
        f"CPU edged, % of one core: crowd {100 * loaded['edged']:.1f} over "
        f"{loaded['elapsed']:.0f} s; no viewer {100 * idle['edged']:.1f} over "
        f"{idle['elapsed']:.0f} s (reference, same daemon); ratio "
        f"{loaded['edged'] / idle['edged']:.2f}; +{100 * increment:.3f} per player"
    )
    print(
        f"CPU this process (the {players} clients): {100 * loaded['clients']:.1f}% of one core "
        f"during the crowd; the machine has {psutil.cpu_count()} cores, shared by both"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="each player's viewing")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="the no-viewer reference")
    parser.add_argument("--start", choices=("rfc", "last"), default="rfc", help="where to join")
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    args = parser.parse_args()
    raise_fd_limit(args.players)
    report(args, *run(args))


if __name__ == "__main__":
    main()
