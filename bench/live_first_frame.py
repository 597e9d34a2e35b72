"""Time from request to first decoded live frame, for HLS and WHEP, with and without the GOP cache.

Two daemons run the test pattern on loopback (720p30, GOP 1 s), one with `[live] gop_cache` on and
one with it off. Each protocol joins 50 times in sequence, at random moments in the GOP, and
decodes until the first frame: HLS with PyAV from the playlist, WHEP with an aiortc client. HLS
always starts from a complete segment, so the switch only changes WHEP; both columns are shown.
It also measures the CPU cost per WebRTC viewer: 10 viewers of one stream against 10 encodes.

Usage: python bench/live_first_frame.py [--joins 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import av  # noqa: E402
import psutil  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from edged.media.webrtc import restrict_ice_addresses  # noqa: E402
from tests.support import launch_edged, loopback_config  # noqa: E402

PATH = "/live/test-pattern"


def start(work: Path, name: str, gop_cache: bool) -> tuple[subprocess.Popen[str], str]:
    config = work / f"{name}.toml"
    config.write_text(
        loopback_config(
            name,
            {
                "mdns": {"enabled": False},
                "media": {"pattern_size": "1280x720", "pattern_fps": 30, "gop_seconds": 1.0},
                "live": {"ice_addresses": ["127.0.0.1"], "gop_cache": gop_cache, "max_viewers": 50},
            },
        )
    )
    return launch_edged(config, work / name)


def hls_first_frame(base: str) -> float:
    started = time.perf_counter()
    with av.open(
        base + PATH + "/index.m3u8", options={"live_start_index": "-1"}, timeout=10
    ) as container:
        next(container.decode(video=0))
    return time.perf_counter() - started


async def join_viewer(
    client: aiohttp.ClientSession, base: str, on_frame: Callable[[], None]
) -> tuple[RTCPeerConnection, str, list[asyncio.Task[None]]]:
    """Negotiate one WebRTC viewer over WHEP; `on_frame` hears of every decoded frame.

    Returns the peer, its session URL and the tasks pulling its frames."""
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer.addTransceiver("video", direction="recvonly")
    pulls: list[asyncio.Task[None]] = []

    @peer.on("track")
    def on_track(track: object) -> None:
        async def pull() -> None:
            while True:
                await track.recv()  # type: ignore[attr-defined]
                on_frame()

        pulls.append(asyncio.create_task(pull()))

    await peer.setLocalDescription(await peer.createOffer())
    async with client.post(
        base + PATH + "/whep",
        data=peer.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    ) as response:
        location = response.headers["Location"]
        answer = await response.text()
    await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return peer, base + location, pulls


async def leave(
    client: aiohttp.ClientSession,
    peer: RTCPeerConnection,
    session: str,
    pulls: list[asyncio.Task[None]],
) -> None:
    async with client.delete(session):
        pass
    await peer.close()
    for task in pulls:
        task.cancel()


async def whep_first_frame(client: aiohttp.ClientSession, base: str) -> float:
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def shown() -> None:
        if not first.done():
            first.set_result(time.perf_counter())

    started = time.perf_counter()
    peer, session, pulls = await join_viewer(client, base, shown)
    async with asyncio.timeout(20):
        at = await first
    await leave(client, peer, session, pulls)
    return at - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def joins(base: str, count: int, rng: random.Random) -> dict[str, list[float]]:
    result: dict[str, list[float]] = {"hls": [], "whep": []}
    async with aiohttp.ClientSession() as client:
        for _ in range(count):
            await asyncio.sleep(rng.uniform(0, 1.0))  # a random moment in the 1 s GOP
            result["hls"].append(await asyncio.to_thread(hls_first_frame, base))
            await asyncio.sleep(rng.uniform(0, 1.0))
            result["whep"].append(await whep_first_frame(client, base))
    return result


async def viewer_cost(
    base: str, pid: int, viewers: int = 10, seconds: float = 10.0
) -> tuple[float, float]:
    """Extra CPU seconds per second of the daemon with `viewers` WebRTC viewers connected."""
    process = psutil.Process(pid)

    def cpu() -> float:
        times = process.cpu_times()
        return times.user + times.system

    before = cpu()
    await asyncio.sleep(seconds)
    idle = (cpu() - before) / seconds
    async with aiohttp.ClientSession() as client:
        joined = [await join_viewer(client, base, lambda: None) for _ in range(viewers)]
        await asyncio.sleep(2)
        before = cpu()
        await asyncio.sleep(seconds)
        loaded = (cpu() - before) / seconds
        for peer, session, pulls in joined:
            await leave(client, peer, session, pulls)
    return (loaded - idle) / viewers, idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    args = parser.parse_args()
    restrict_ice_addresses(["127.0.0.1"])
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {}
        per_viewer = encode = 0.0
        for name, cache in (("cached", True), ("uncached", False)):
            process, base = start(work, name, cache)
            try:
                time.sleep(3)
                results[name] = asyncio.run(joins(base, args.joins, rng))
                if cache:
                    per_viewer, encode = asyncio.run(viewer_cost(base, process.pid))
            finally:
                process.terminate()
                process.wait(timeout=20)
    print(
        f"first decoded frame, {args.joins} sequential joins at random moments "
        f"(720p30, GOP 1 s, loopback, seed {args.seed})"
    )
    print(f"{'protocol':9} {'GOP cache':10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for protocol in ("hls", "whep"):
        row = {}
        for name in ("cached", "uncached"):
            values = [1000 * v for v in results[name][protocol]]
            row[name] = percentile(values, 0.95)
            print(
                f"{protocol:9} {('on' if name == 'cached' else 'off'):10} "
                f"{statistics.median(values):8.1f} {row[name]:8.1f} {max(values):8.1f}"
            )
        print(
            f"{'':9} p95 ratio on/off: {row['cached'] / row['uncached']:.2f} (target p95 <= 300 ms"
            " with the cache)"
        )
    print(
        f"CPU: the stream (capture + encode + outputs) {100 * encode:.1f}% of a core; each "
        f"WebRTC viewer adds {100 * per_viewer:.2f}% ({per_viewer / encode:.3f} of an encode)"
    )


if __name__ == "__main__":
    main()
