"""A crowd through the cache in front: N HLS players through nginx (configs/nginx/edged-edge.conf)
against one edged; how many requests reached the box per segment, and whether every player got
every segment on time.

One edged daemon on loopback runs the test pattern (1280x720 30 fps, GOP 1 s, so 1 s segments),
as bench/hls_crowd.py's does; Debian's nginx runs the shipped edge config (only the box's address,
the port and the cache directory replaced) on loopback in front of it. N players (1,000) are
bench/hls_crowd.py's: each an asyncio task with its own aiohttp session, started within 1 s,
following the playlist for --seconds (60 s) as a native player does (RFC 8216), through nginx.

Printed: from nginx's access log, the requests that went on to the box, per segment (and per
rendition: the box has one per stream), for the init segment and for the playlist (per second);
edged's own count of the playlist requests it answered (edged_first_byte_seconds_count{kind=
"live"}) and of the HLS bytes it sent (edged_live_bytes_total) against the bytes of the distinct
segments; then what the players saw: segments served, skipped, stalls (target 0), the margin
before each segment was needed, request times and HTTP errors; the CPU of edged and of nginx.

Usage: python bench/edge_crowd.py [--players 1000] [--seconds 60] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # bench/hls_crowd.py's players

import psutil  # noqa: E402
from hls_crowd import (  # noqa: E402
    STREAM,
    Tally,
    crowd,
    percentile,
    raise_fd_limit,
    start_daemon,
    wait_for_window,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.edge_cache import EdgeCache, Logged  # noqa: E402

SEGMENT = re.compile(r"^/live/(?P<stream>[^/]+)/segment-[0-9a-f]{8}-(?P<sequence>\d+)\.m4s$")


def box_figures(base: str) -> dict[str, float]:
    """edged's own counts: live playlists answered, HLS bytes sent."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    found = {"playlists": 0.0, "hls_bytes": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "edged_first_byte_seconds_count" and sample.labels["kind"] == "live":
                found["playlists"] = sample.value
            elif sample.name == "edged_live_bytes_total" and sample.labels["protocol"] == "hls":
                found["hls_bytes"] += sample.value
    return found


def per_segment(log: list[Logged]) -> tuple[dict[str, Counter[int]], dict[str, set[int]]]:
    """stream -> sequence -> requests that reached the box; stream -> sequences players got."""
    to_box: dict[str, Counter[int]] = defaultdict(Counter)
    asked: dict[str, set[int]] = defaultdict(set)
    for entry in log:
        match = SEGMENT.match(entry.uri)
        if match is None:
            continue
        stream, sequence = match["stream"], int(match["sequence"])
        if entry.status == 200:
            asked[stream].add(sequence)
        if entry.upstream:
            to_box[stream][sequence] += 1
    return to_box, asked


def report_box(
    log: list[Logged],
    seconds: float,
    before: dict[str, float],
    after: dict[str, float],
    segment_bytes: float,
) -> None:
    to_box, asked = per_segment(log)
    for stream in sorted(asked):
        counts = [to_box[stream][sequence] for sequence in sorted(asked[stream])]
        spread = Counter(counts)
        print(
            f"rendition {stream}: {len(counts)} segments fetched by players; requests that reached "
            f"edged per segment: mean {statistics.mean(counts):.3f}, max {max(counts)}; "
            + ", ".join(f"{n} request(s): {k} segments" for n, k in sorted(spread.items()))
        )
    kinds: Counter[tuple[str, bool]] = Counter()
    for entry in log:
        kind = entry.uri.rsplit("/", 1)[-1]
        kind = "segment" if kind.startswith("segment-") else kind
        kind = "init" if kind.startswith("init-") else kind
        kinds[(kind, entry.upstream)] += 1
    for kind in ("index.m3u8", "init", "segment"):
        total = kinds[(kind, True)] + kinds[(kind, False)]
        print(f"{kind}: {total} requests to nginx, {kinds[(kind, True)]} reached edged")
    playlists = after["playlists"] - before["playlists"]
    print(
        f"edged's own count: {playlists:.0f} playlist requests answered "
        f"({playlists / seconds:.2f}/s over {seconds:.0f} s); HLS bytes sent "
        f"{(after['hls_bytes'] - before['hls_bytes']) / 1e6:.1f} MB for "
        f"{segment_bytes / 1e6:.1f} MB of distinct segments fetched"
    )


def report_players(tally: Tally) -> None:
    print(
        f"players: segments served {tally.served}, skipped {tally.skipped}; "
        f"stalls {tally.stalls} (target 0)"
    )
    margins = tally.margins
    print(
        f"margin (arrival before the predecessor's end), s: min {min(margins, default=0):.3f} "
        f"p5 {percentile(margins, 0.05):.3f} p50 {percentile(margins, 0.5):.3f} "
        f"p95 {percentile(margins, 0.95):.3f}"
    )
    for kind, times in (("playlist", tally.playlist_times), ("segment", tally.segment_times)):
        print(
            f"{kind} requests {len(times)}: p50 {1000 * percentile(times, 0.5):.1f} ms "
            f"p95 {1000 * percentile(times, 0.95):.1f} ms max {1000 * max(times, default=0):.1f} ms"
        )
    errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(tally.errors.items()))
    print(
        f"HTTP errors: {errors or 'none'}; the clients' loop woke at worst "
        f"{1000 * tally.loop_lag:.0f} ms late"
    )


def segment_sizes(log: list[Logged], edge: EdgeCache) -> float:
    """Bytes of the distinct segments the players fetched (each fetched again from the cache)."""
    total = 0.0
    for uri in {entry.uri for entry in log if SEGMENT.match(entry.uri) and entry.status == 200}:
        try:
            with urllib.request.urlopen(edge.url + uri, timeout=10) as response:  # noqa: S310
                total += len(response.read())
        except OSError:
            continue  # gone from the cache and the box's window: not counted
    return total


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system seconds of each process."""
    return {name: sum(psutil.Process(pid).cpu_times()[:2]) for name, pid in pids.items()}


def through_the_edge(args: argparse.Namespace, box: str, pid: int, work: Path) -> None:
    """nginx in front of the box; the crowd through it; the figures."""
    edge = EdgeCache(
        work / "nginx", box.removeprefix("http://"), connections=2 * args.players + 256
    )
    edge.start()
    try:
        assert edge.process is not None
        pids = {"edged": pid, "nginx": edge.process.pid}
        before, cpu = box_figures(box), cpu_seconds(pids)
        started = time.monotonic()
        tally = asyncio.run(crowd(edge.url + STREAM, args.players, args.seconds, "rfc", args.seed))
        elapsed = time.monotonic() - started
        used = {
            name: (seconds - cpu[name]) / elapsed for name, seconds in cpu_seconds(pids).items()
        }
        after, log = box_figures(box), edge.log()
        print(
            f"edge crowd: {args.players} players x {args.seconds:g} s through nginx "
            f"(configs/nginx/edged-edge.conf) to one edged, 1280x720 30 fps, 1 s segments, "
            f"loopback, {psutil.cpu_count()} cores shared with the clients, seed {args.seed}"
        )
        report_box(log, elapsed, before, after, segment_sizes(log, edge))
        report_players(tally)
        print(
            f"CPU, % of one core over {elapsed:.0f} s: edged {100 * used['edged']:.1f}, "
            f"nginx {100 * used['nginx']:.1f}"
        )
    finally:
        edge.stop()


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, box = start_daemon(Path(tmp))
        try:
            asyncio.run(wait_for_window(box + STREAM))
            through_the_edge(args, box, process.pid, Path(tmp))
        finally:
            process.terminate()
            process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0, help="each player's viewing")
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    args = parser.parse_args()
    raise_fd_limit(args.players)
    run(args)


if __name__ == "__main__":
    main()
