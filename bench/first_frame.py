"""Bytes to the first frame of a cached 1080p clip under a crowd, edged beside nginx.

One edged daemon on loopback holds the same 1080p clip twice: pinned (its first fragment in RAM)
and unpinned (on disk); nginx (Debian's, one worker, started here) serves the pinned copy's file.
A crowd of N clients (1, 50, 200, 1,000) connect at the same moment, each GETs the clip and
reads what a player needs before it can show the first frame: the bytes up to the end of the
first `mdat`. The clients count bytes and decode nothing (fifty 1080p decodes on 2 cores would
measure the clients, not the server); they run on one event loop in this process, the servers in
theirs. Each crowd starts on quiet servers: the bench waits until neither server's CPU time moves
(a crowd's aftermath, such as the disk path's reads for clients already gone, would otherwise be
charged to the next case), and prints how long the servers stayed busy after each case's last
crowd. p50/p95/p99 per case over --rounds crowds, with errors (refused, reset, short reads),
and p95's ratio to nginx's in the same crowd size. One real PyAV decode of the first frame from
each server shows the bytes are a playable clip.

Usage: python bench/first_frame.py [--crowds 1,50,200,1000] [--rounds 3] [--pin]   (needs nginx)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import psutil  # noqa: E402

from edged.cache.prepare import head_size  # noqa: E402
from tests.clips import make_clip  # noqa: E402
from tests.support import launch_edged, loopback_config  # noqa: E402

TIMEOUT = 30.0


async def first_frame_bytes(url: str, wanted: int, start: asyncio.Event) -> float:
    """Seconds from connecting to holding the first `wanted` bytes of the body."""
    parts = urlsplit(url)
    await start.wait()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
        writer.write(request.encode() + b"\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        await reader.readexactly(wanted)
        return time.perf_counter() - started
    finally:
        writer.close()


async def crowd(url: str, wanted: int, clients: int) -> tuple[list[float], list[str]]:
    """`clients` connect at once; each one's seconds, and the errors of those that failed."""
    start = asyncio.Event()
    jobs = [
        asyncio.create_task(asyncio.wait_for(first_frame_bytes(url, wanted, start), TIMEOUT))
        for _ in range(clients)
    ]
    await asyncio.sleep(0.05)  # every client waits on the event
    start.set()
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    times = [o for o in outcomes if isinstance(o, float)]
    errors = [type(o).__name__ for o in outcomes if isinstance(o, BaseException)]
    return times, errors


def decode_first(url: str) -> float:
    """One real player: PyAV reads the clip over HTTP and decodes its first frame."""
    started = time.perf_counter()
    with av.open(url, options={"probesize": "32", "analyzeduration": "0"}) as container:
        frame = next(container.decode(video=0))
    if frame.width != 1920:
        raise RuntimeError(f"decoded {frame.width}x{frame.height}")
    return time.perf_counter() - started


QUIET_CPU = 0.003  # seconds of CPU in QUIET_WINDOW that still count as idle
QUIET_WINDOW = 0.2


def settle(servers: list[psutil.Process], deadline: float = 30.0) -> float:
    """Wait until the servers are idle (under QUIET_CPU of CPU time, all their threads, in a
    QUIET_WINDOW); the seconds they stayed busy."""
    started = time.perf_counter()

    def used() -> float:
        return sum(sum(server.cpu_times()[:2]) for server in servers)

    before = used()
    while time.perf_counter() - started < deadline:
        time.sleep(QUIET_WINDOW)
        now = used()
        if now - before < QUIET_CPU:
            return time.perf_counter() - started - QUIET_WINDOW
        before = now
    raise RuntimeError(f"the servers were still busy after {deadline:.0f} s")


def pin(servers: list[psutil.Process]) -> None:
    """The servers on the last core, this process (the crowd) on the others: a crowd sharing its
    server's core in some rounds and not in others makes the rounds bimodal."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    for server in servers:
        for thread in server.threads():
            os.sched_setaffinity(thread.id, {cores[-1]})
    os.sched_setaffinity(0, set(cores[:-1]))


def nginx_workers(work: Path) -> list[psutil.Process]:
    master = psutil.Process(int((work / "nginx.pid").read_text()))
    return [master, *master.children()]


@contextmanager
def nginx(work: Path, root: Path) -> Iterator[str]:
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = work / "nginx.conf"
    config.write_text(
        f"user root; worker_processes 1; pid {work}/nginx.pid; error_log stderr warn;\n"
        "worker_rlimit_nofile 8192; events { worker_connections 4096; }\n"
        "http { access_log off; sendfile on; tcp_nopush on; types { video/mp4 mp4; }\n"
        f"  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;\n"
        f"  fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi;\n"
        f"  scgi_temp_path {work}/scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    subprocess.run(["nginx", "-c", str(config)], check=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(["nginx", "-c", str(config), "-s", "quit"], check=False)


@contextmanager
def edged(work: Path) -> Iterator[tuple[str, psutil.Process]]:
    config = work / "edged.toml"
    config.write_text(
        loopback_config("bench", {"mdns": {"enabled": False}, "media": {"test_pattern": "off"}})
    )
    process, url = launch_edged(config, work / "data")
    try:
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


def add_to_cache(data: Path, clip: Path, name: str, pin: bool) -> None:
    command = [sys.executable, "-m", "edged", "cache", "--data-dir", str(data)]
    command += ["add", str(clip), "--name", name, *(["--pin"] if pin else [])]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crowds", default="1,50,200,1000", help="clients at once, by comma")
    parser.add_argument("--rounds", type=int, default=3, help="crowds per case and size, pooled")
    parser.add_argument("--pin", action="store_true", help="servers on one core, crowd on others")
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx not found: apt-get install nginx")
    sizes = [int(size) for size in args.crowds.split(",")]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(  # as a clip from the event's producer would be
            work / "clip.mp4",
            seconds=10,
            size="1920x1080",
            codec_options={"preset": "veryfast", "g": "30", "keyint_min": "30", "bf": "0"},
        )
        data = work / "data"
        add_to_cache(data, clip, "pinned.mp4", pin=True)
        add_to_cache(data, clip, "ondisk.mp4", pin=False)
        prepared = data / "cache" / "assets" / "pinned.mp4.mp4"
        wanted = head_size(prepared)
        with edged(work) as (edged_url, daemon), nginx(work, prepared.parent) as nginx_url:
            servers = {"nginx, same file": nginx_workers(work), "edged": [daemon]}
            if args.pin:
                pin([process for processes in servers.values() for process in processes])
            cases = {
                "nginx, same file": f"{nginx_url}/{prepared.name}",
                "edged pinned (RAM head)": f"{edged_url}/assets/pinned.mp4",
                "edged unpinned (disk)": f"{edged_url}/assets/ondisk.mp4",
            }
            decodes = {case: decode_first(url) for case, url in cases.items()}
            results, busy = run_crowds(cases, servers, wanted, sizes, args.rounds)
    print(
        f"bytes to the first frame (the first {wanted} bytes: up to the end of the first mdat) of "
        f"a 1080p30 clip, N clients at once x {args.rounds} rounds, loopback"
    )
    print(
        f"{'case':26} {'N':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'vs nginx':>9} "
        f"{'each round':>16} errors"
    )
    for size in sizes:
        print_size(results, busy, cases, size)
    print("one PyAV decode of the first frame over HTTP, alone: ", end="")
    print(", ".join(f"{case} {seconds * 1000:.0f} ms" for case, seconds in decodes.items()))
    print("target: p95 within 1.5x of nginx at 50, 200 and 1,000; no error at 1,000")
    print("each round: that round's p95 over nginx's p95 in the same round (a slow moment shows)")
    print("busy after: how long the server's CPU kept moving after this case's last crowd left")


Results = dict[tuple[str, int], tuple[list[float], list[str], list[float]]]


def print_size(
    results: Results, busy: dict[tuple[str, int], float], cases: dict[str, str], size: int
) -> None:
    nginx_times, _, nginx_rounds = results[("nginx, same file", size)]
    reference = percentile(sorted(nginx_times), 0.95)
    for case in cases:
        times, errors, rounds = results[(case, size)]
        ordered = sorted(t * 1000 for t in times) or [float("nan")]
        p95 = percentile(ordered, 0.95)
        paired = zip(rounds, nginx_rounds, strict=True)
        each = ",".join(f"{mine / theirs:.2f}" for mine, theirs in paired)
        print(
            f"{case:26} {size:5} {statistics.median(ordered):8.1f} {p95:8.1f} "
            f"{percentile(ordered, 0.99):8.1f} {p95 / (reference * 1000):9.2f} {each:>16} "
            f"{len(errors)} {' '.join(sorted(set(errors)))} "
            f"busy after {busy[(case, size)] * 1000:.0f} ms"
        )


def run_crowds(
    cases: dict[str, str],
    servers: dict[str, list[psutil.Process]],
    wanted: int,
    sizes: list[int],
    rounds: int,
) -> tuple[Results, dict[tuple[str, int], float]]:
    """Each size, each round, each case in turn (so a slow moment hits them alike), each crowd
    on quiet servers: the pooled seconds, the errors, and each round's p95; and how long the
    case's server stayed busy after its last crowd."""
    results: Results = {}
    busy: dict[tuple[str, int], float] = {}
    everyone = [process for processes in servers.values() for process in processes]
    for size in sizes:
        for _ in range(rounds):
            for case, url in cases.items():
                settle(everyone)
                times, errors = asyncio.run(crowd(url, wanted, size))
                busy[(case, size)] = settle(servers.get(case, servers["edged"]))
                pooled = results.setdefault((case, size), ([], [], []))
                pooled[0].extend(times)
                pooled[1].extend(errors)
                pooled[2].append(percentile(sorted(times), 0.95) if times else float("nan"))
    return results, busy


if __name__ == "__main__":
    main()
