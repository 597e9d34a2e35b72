"""edged over two uplinks against minio's `fput_object` over the faster one alone, and against
the sum of the links' rates (issue #20's target: at least 0.85 of the sum).

tests/netns.py makes the links: two veth uplinks from a client network namespace to moto in a
server namespace, rate-limited with tc tbf (4 and 8 Mbit/s by default); nothing leaves the
machine. edged runs as tests/uplink_driver.py in the client namespace (the daemon's config, uplink
pool, journal and FileTransfer), sending two files one after the other: the first with links not
measured yet, the second with the throughputs the first measured. Its time runs from enqueue to
verified (sending, completion, the final stat; the file's sha256 is taken before, as the daemon
takes it when a file is queued, and is not counted). minio sends the same size by the faster
uplink (bound to its interface), with the same part size. Needs root.

Usage: python bench/uplinks.py [--size-mib 32] [--rates 4 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from tests.integration.upload_support import write_random  # noqa: E402
from tests.netns import Uplinks, driver_config, unavailable  # noqa: E402
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoProcess  # noqa: E402

MiB = 1024 * 1024
PART_MIB = 16
MINIO_BY = """
import socket, sys, time, urllib3
from minio import Minio
endpoint, address, interface, path, part = sys.argv[1:6]
options = urllib3.connection.HTTPConnection.default_socket_options + [
    (socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())]
http = urllib3.PoolManager(source_address=(address, 0), socket_options=options)
client = Minio(endpoint, access_key=sys.argv[6], secret_key=sys.argv[7], secure=False,
    region="us-east-1", http_client=http)
start = time.perf_counter()
client.fput_object("edged", "bench/minio.bin", path, part_size=int(part))
print(time.perf_counter() - start)
"""


def edged_runs(net: Uplinks, s3: MotoProcess, work: Path, files: list[Path]) -> list[dict]:
    command = net.command(
        sys.executable,
        "-m",
        "tests.uplink_driver",
        str(driver_config(work, s3, metered=(False,) * len(net.links), part_mib=PART_MIB)),
        str(work / "data"),
        *(f"recording:{path}" for path in files),
    )
    (work / "data").mkdir()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"edged driver failed:\n{done.stderr}")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    results = [line for line in lines if "state" in line]
    for result in results:
        if result["state"] != "done":
            raise SystemExit(f"edged upload failed: {result}")
    return results


def minio_run(net: Uplinks, s3: MotoProcess, path: Path) -> float:
    fast = max(net.links, key=lambda link: link.rate_mbit)
    command = net.command(
        sys.executable,
        "-c",
        MINIO_BY,
        s3.endpoint,
        fast.address,
        fast.interface,
        str(path),
        str(PART_MIB * MiB),
        ACCESS_KEY,
        SECRET_KEY,
    )
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"minio failed:\n{done.stderr}")
    return float(done.stdout.strip())


def mbit(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=32)
    parser.add_argument("--rates", type=float, nargs="+", default=[4.0, 8.0])
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"bench/uplinks.py: {reason}")
    size = args.size_mib * MiB
    total = sum(args.rates)
    with tempfile.TemporaryDirectory() as scratch, Uplinks(args.rates) as net:
        work = Path(scratch)
        s3 = net.start_s3()
        files = [work / "first.mp4", work / "second.mp4", work / "minio.bin"]
        for path in files:
            write_random(path, size)
        before = [net.tx_bytes(link) for link in net.links]
        started = time.perf_counter()
        edged = edged_runs(net, s3, work, files[:2])
        wall = time.perf_counter() - started
        by_link = [net.tx_bytes(link) - was for link, was in zip(net.links, before, strict=True)]
        minio_seconds = minio_run(net, s3, files[2])
    fast = max(args.rates)
    print(
        f"links: {' + '.join(f'{rate:g}' for rate in args.rates)} Mbit/s (tc tbf), "
        f"file {args.size_mib} MiB, configured part {PART_MIB} MiB, parallel_parts 2"
    )
    for name, result in zip(
        ("first (links not measured)", "second (measured)"), edged, strict=True
    ):
        rate = mbit(size, result["seconds"])
        print(
            f"edged, both links, {name}: {result['seconds']:.1f} s, {rate:.2f} Mbit/s, "
            f"{rate / total:.2f} of the sum, {result['parts']} parts of "
            f"{result['part_size'] // MiB} MiB"
        )
    share = ", ".join(f"{net.links[i].interface} {b / MiB:.1f} MiB" for i, b in enumerate(by_link))
    print(f"edged, bytes by link (both files, {wall:.1f} s with start-up): {share}")
    minio_rate = mbit(size, minio_seconds)
    print(
        f"minio fput_object, the {fast:g} Mbit/s link alone: {minio_seconds:.1f} s, "
        f"{minio_rate:.2f} Mbit/s, {minio_rate / fast:.2f} of its link"
    )
    for name, result in zip(("first", "second"), edged, strict=True):
        rate = mbit(size, result["seconds"])
        verdict = "meets" if rate / total >= 0.85 else "misses"
        print(
            f"ratio, edged {name} / minio: {rate / minio_rate:.2f}; edged {name} / sum of "
            f"rates: {rate / total:.2f} ({verdict} the 0.85 target)"
        )


if __name__ == "__main__":
    main()
