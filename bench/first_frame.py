"""Time to the first decoded frame of a cached 1080p clip, N concurrent clients, beside nginx.

One edged daemon on loopback holds the same 1080p clip twice: pinned (its first fragment in RAM)
and unpinned (on disk); a third copy sits only in the upstream bucket (moto, in its own process),
so it comes by pull-through. nginx (Debian's), started here on loopback, serves the pinned copy's
file. Each of N clients (default 50, all at once) GETs the clip and feeds the streamed bytes to
PyAV until the first video frame decodes. p50/p95/p99 per case, and the ratio to nginx.

Usage: python bench/first_frame.py [--clients 50]      (needs Debian's nginx)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import av  # noqa: E402
from minio import Minio  # noqa: E402

from edged.media.mp4 import whole_prefix  # noqa: E402
from tests.s3server import ACCESS_KEY, SECRET_KEY  # noqa: E402
from tests.support import launch_edged, loopback_config  # noqa: E402

CHUNK = 64 * 1024


def make_clip(path: Path, seconds: int = 10) -> None:
    """1080p30 H.264 with a 1 s GOP, as a clip from the event's producer would be."""
    out: Any = av.open(str(path), "w")
    stream: Any = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
    stream.options = {"preset": "veryfast", "g": "30", "keyint_min": "30", "bf": "0"}
    source: Any = av.open("testsrc2=size=1920x1080:rate=30", format="lavfi")
    for index, frame in enumerate(source.decode(video=0)):
        frame.pict_type = av.video.frame.PictureType.NONE  # lavfi marks every frame I: no GOP
        for packet in stream.encode(frame):
            out.mux(packet)
        if index + 1 >= seconds * 30:
            break
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    source.close()


def decodes(buffer: bytes) -> bool:
    try:
        container: Any = av.open(io.BytesIO(buffer))
        with container:
            next(container.decode(video=0))
        return True
    except (av.FFmpegError, StopIteration, ValueError):
        return False


def has_first_fragment(buffer: bytes) -> bool:
    """Whether the bytes so far hold the header and one whole fragment (cheap: box headers)."""
    _, fragments = whole_prefix(io.BytesIO(buffer), len(buffer))
    return fragments >= 1


async def first_frame(client: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    buffer = bytearray()
    async with client.get(url) as response:
        assert response.status == 200, response.status
        async for chunk in response.content.iter_chunked(CHUNK):
            buffer += chunk
            if has_first_fragment(bytes(buffer)) and await asyncio.to_thread(
                decodes, bytes(buffer)
            ):
                return time.perf_counter() - started
    if await asyncio.to_thread(decodes, bytes(buffer)):
        return time.perf_counter() - started
    raise RuntimeError(f"{url}: no frame decoded")


async def crowd(url: str, clients: int) -> list[float]:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as client:
        return list(await asyncio.gather(*(first_frame(client, url) for _ in range(clients))))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx not found: apt-get install nginx")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(clip)
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
        client.fput_object("edged", "assets/walkin.mp4", str(clip))
        data = work / "data"
        for name, pin in (("pinned.mp4", ["--pin"]), ("ondisk.mp4", [])):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edged",
                    "cache",
                    "--data-dir",
                    str(data),
                    "add",
                    str(clip),
                    "--name",
                    name,
                    *pin,
                ],
                check=True,
                cwd=REPO,
                capture_output=True,
            )
        edged, edged_url = start_edged(work, endpoint)
        nginx, nginx_url = start_nginx(work, data / "cache" / "assets")
        try:
            results = {
                "edged pinned (RAM head)": asyncio.run(
                    crowd(edged_url + "/assets/pinned.mp4", args.clients)
                ),
                "nginx, same file": asyncio.run(crowd(nginx_url + "/pinned.mp4.mp4", args.clients)),
                "edged unpinned (disk)": asyncio.run(
                    crowd(edged_url + "/assets/ondisk.mp4", args.clients)
                ),
                "edged pull-through": asyncio.run(
                    crowd(edged_url + "/assets/walkin.mp4", args.clients)
                ),
            }
        finally:
            for process in (edged, nginx):
                process.terminate()
                process.wait(timeout=20)
            s3.stdin.close()
            s3.wait(timeout=20)
    size = clip.stat().st_size if clip.exists() else 0
    print(
        f"time to first decoded frame, {args.clients} concurrent clients, 1080p30 clip with "
        f"a 1 s GOP, loopback{f', {size} bytes' if size else ''}"
    )
    print(f"{'case':26} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p95 vs nginx':>13}")
    reference = summary(results["nginx, same file"])[1]
    for case, values in results.items():
        p50, p95, p99 = summary(values)
        print(f"{case:26} {p50:8.1f} {p95:8.1f} {p99:8.1f} {p95 / reference:13.2f}")
    print("targets: pinned p95 <= 100 ms, p99 <= 300 ms, within 1.5x of nginx")


if __name__ == "__main__":
    main()
