"""Time to the first decoded frame of a cached 1080p clip, N concurrent clients, beside nginx.

One edged daemon on loopback holds the same 1080p clip twice: pinned (its first fragment in RAM)
and unpinned (on disk); a third copy sits only in the upstream bucket (moto, in its own process),
so it comes by pull-through. nginx (Debian's), started here on loopback, serves the pinned copy's
file. Each of N clients (default 50 threads, started at the same moment) GETs the clip and
hands the response to PyAV, which reads it as it arrives and decodes the first video frame.
p50/p95/p99 per case over --rounds crowds, and the ratio to nginx.

The first line, "decode floor", is the same clients decoding the same bytes from memory, with
no server and no socket: what the clients themselves cost on this machine. Every case carries
it, because the clients share the cores with the server.

Usage: python bench/first_frame.py [--clients 50] [--rounds 3]      (needs Debian's nginx)
"""

from __future__ import annotations

import argparse
import http.client
import io
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
from minio import Minio  # noqa: E402

from edged.cache.prepare import head_size  # noqa: E402
from tests.clips import make_clip  # noqa: E402
from tests.s3server import ACCESS_KEY, SECRET_KEY  # noqa: E402
from tests.support import launch_edged, loopback_config  # noqa: E402

# How a player opens a stream: no 5 MB probe ahead of the first frame, and the probe does not
# decode (FFmpeg's probe decodes a frame to learn the pixel format; that would double the work).
LEAN = {"probesize": "32", "analyzeduration": "0", "threads": "1", "skip_frame": "all"}


def decode_first(stream: Any) -> None:
    """Read the clip from `stream` as it comes and decode its first video frame.

    The decoder returns a frame as soon as it is decoded, like a phone's: one thread (frame
    threads hold frames back until they have several).
    """
    container: Any
    with av.open(stream, options=LEAN) as container:
        video = container.streams.video[0]
        video.codec_context.skip_frame = "DEFAULT"
        video.codec_context.thread_type = "SLICE"
        video.codec_context.thread_count = 1
        frame = next(container.decode(video))
        if frame.width != 1920 or not frame.key_frame:
            raise RuntimeError(f"decoded {frame.width}x{frame.height}, key {frame.key_frame}")


def over_http(url: str) -> float:
    parts = urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
        decode_first(response)
        return time.perf_counter() - started
    finally:
        connection.close()


def from_memory(data: bytes) -> float:
    """The floor: the same decoding from bytes already in memory, no server, no socket."""
    started = time.perf_counter()
    decode_first(io.BytesIO(data))
    return time.perf_counter() - started


def decode_cpu(data: bytes, runs: int = 10) -> float:
    """CPU seconds of one client's open-and-decode, alone (median of `runs`)."""
    spent = []
    for _ in range(runs):
        before = time.process_time()
        from_memory(data)
        spent.append(time.process_time() - before)
    return statistics.median(spent)


def crowd(job: Callable[[], float], clients: int) -> list[float]:
    """`clients` threads run `job` at the same moment; each one's seconds."""
    barrier = threading.Barrier(clients)

    def one(_: int) -> float:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients)))


def start_nginx(work: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = work / "nginx.conf"
    config.write_text(
        f"daemon off; user root; worker_processes 1; pid {work}/nginx.pid; error_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; types {{ video/mp4 mp4; }}\n"
        f"  client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;\n"
        f"  fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi;\n"
        f"  scgi_temp_path {work}/scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    process = subprocess.Popen(["nginx", "-c", str(config)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}"


def start_edged(work: Path, s3_endpoint: str) -> tuple[subprocess.Popen[str], str]:
    secret = work / "secret"
    secret.write_text(SECRET_KEY)
    secret.chmod(0o600)
    config = work / "edged.toml"
    config.write_text(
        loopback_config(
            "bench",
            {
                "mdns": {"enabled": False},
                "media": {"test_pattern": "off"},
                "upstream": {
                    "endpoint": s3_endpoint,
                    "secure": False,
                    "access_key": ACCESS_KEY,
                    "secret_key_file": str(secret),
                },
            },
        )
    )
    return launch_edged(config, work / "data")


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(v * 1000 for v in values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def add_to_cache(data: Path, clip: Path, name: str, pin: bool) -> None:
    command = [sys.executable, "-m", "edged", "cache", "--data-dir", str(data)]
    command += ["add", str(clip), "--name", name, *(["--pin"] if pin else [])]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="crowds per case, pooled")
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx not found: apt-get install nginx")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(  # as a clip from the event's producer would be
            clip,
            seconds=10,
            size="1920x1080",
            codec_options={"preset": "veryfast", "g": "30", "keyint_min": "30", "bf": "0"},
        )
        s3 = subprocess.Popen(
            [sys.executable, "-m", "tests.s3server"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert s3.stdout is not None
        assert s3.stdin is not None
        endpoint = f"127.0.0.1:{s3.stdout.readline().strip()}"
        client = Minio(
            endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1"
        )
        client.make_bucket("edged")
        for round_ in range(args.rounds):  # pull-through needs a clip not yet local each round
            client.fput_object("edged", f"assets/walkin-{round_}.mp4", str(clip))
        data = work / "data"
        add_to_cache(data, clip, "pinned.mp4", pin=True)
        add_to_cache(data, clip, "ondisk.mp4", pin=False)
        prepared = data / "cache" / "assets" / "pinned.mp4.mp4"
        in_memory = prepared.read_bytes()
        edged, edged_url = start_edged(work, endpoint)
        nginx, nginx_url = start_nginx(work, prepared.parent)
        cases: dict[str, Callable[[int], Callable[[], float]]] = {
            "decode floor (no server)": lambda _: lambda: from_memory(in_memory),
            "edged pinned (RAM head)": lambda _: (
                lambda: over_http(edged_url + "/assets/pinned.mp4")
            ),
            "nginx, same file": lambda _: lambda: over_http(nginx_url + "/" + prepared.name),
            "edged unpinned (disk)": lambda _: lambda: over_http(edged_url + "/assets/ondisk.mp4"),
            "edged pull-through": lambda r: lambda: over_http(f"{edged_url}/assets/walkin-{r}.mp4"),
        }
        try:
            over_http(nginx_url + "/" + prepared.name)  # both servers up and the file cached
            over_http(edged_url + "/assets/ondisk.mp4")
            for case, job in cases.items():
                results[case] = []
                for round_ in range(args.rounds):
                    results[case] += crowd(job(round_), args.clients)
                    time.sleep(0.5)
        finally:
            for process in (edged, nginx):
                process.terminate()
                process.wait(timeout=20)
            s3.stdin.close()
            s3.wait(timeout=20)
        head = head_size(prepared)
        cpu = decode_cpu(in_memory)
        print(
            f"time to first decoded frame, {args.clients} clients at once x {args.rounds} rounds, "
            f"1080p30 clip, 1 s GOP, {len(in_memory)} bytes, first fragment ends at byte {head}, "
            "loopback"
        )
    print(f"{'case':26} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p95 vs nginx':>13}")
    reference = summary(results["nginx, same file"])[1]
    for case, values in results.items():
        p50, p95, p99 = summary(values)
        print(f"{case:26} {p50:8.1f} {p95:8.1f} {p99:8.1f} {p95 / reference:13.2f}")
    cores = os.cpu_count() or 1
    ranked = math.ceil(0.95 * args.clients)
    bound = ranked * cpu / cores * 1000
    print(
        f"one client's open+decode alone: {cpu * 1000:.1f} ms of CPU; with {cores} cores, the "
        f"decode {ranked} of {args.clients} cannot end before {bound:.0f} ms, whatever serves"
    )
    print("targets: pinned p95 <= 100 ms, p99 <= 300 ms, within 1.5x of nginx")


if __name__ == "__main__":
    main()
