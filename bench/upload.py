"""Upload throughput of edged's uploader beside minio's own `fput_object`, and bytes re-sent per
crash when `edged uploads push` is SIGKILLed at random moments.

Both uploaders send the same file with the same part size and parallelism to the same S3 server
(moto on loopback, in its own process), alternating, several rounds; medians are reported.
edged's time runs from enqueue to verified: it includes hashing the file at enqueue and again at
verification, and the final stat; minio's does none of that.

Usage: python bench/upload.py [--size-mib 256] [--rounds 3] [--kills 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minio import Minio  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from edged.metrics import UploadMetrics  # noqa: E402
from edged.upload.journal import Journal  # noqa: E402
from edged.upload.s3 import S3Store  # noqa: E402
from edged.upload.state import FileState  # noqa: E402
from edged.upload.uploader import Uploader, UploaderSettings  # noqa: E402
from tests.integration.test_upload_crash import push_config  # noqa: E402
from tests.integration.upload_support import write_random  # noqa: E402
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server  # noqa: E402
from tests.support import edged_command  # noqa: E402

MiB = 1024 * 1024
PART = 16 * MiB
PARALLEL = 2


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.s3server"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, f"127.0.0.1:{process.stdout.readline().strip()}"


def minio_upload(endpoint: str, path: Path, key: str) -> float:
    client = Minio(
        endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1"
    )
    start = time.perf_counter()
    client.fput_object("edged", key, str(path), part_size=PART, num_parallel_uploads=PARALLEL)
    return time.perf_counter() - start


async def edged_upload(endpoint: str, path: Path, key: str, work: Path) -> float:
    store = S3Store(
        endpoint=endpoint,
        secure=False,
        region="us-east-1",
        bucket="edged",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        connections=PARALLEL + 2,
    )
    journal = Journal(work / f"journal-{key.replace('/', '_')}.sqlite3")
    uploader = Uploader(
        journal,
        store,
        UploaderSettings(part_size=PART, parallel_parts=PARALLEL, bandwidth_limit=0),
        UploadMetrics(CollectorRegistry()),
    )
    await uploader.start()
    try:
        start = time.perf_counter()
        file_id = await uploader.enqueue(path, key)
        await uploader.wait_idle()
        elapsed = time.perf_counter() - start
        state = journal.require(file_id).state
        if state is not FileState.DONE:
            raise SystemExit(f"edged upload failed: {journal.require(file_id).last_error}")
        return elapsed
    finally:
        await uploader.stop()
        journal.close()


def crash_resends(work: Path, kills: int, seed: int) -> tuple[int, int, int, int]:
    """(kills done, part PUT bytes sent, file size, part size) for random-moment SIGKILLs."""
    rng = random.Random(seed)
    server = S3Server()
    server.start()
    client = Minio(
        server.endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        region="us-east-1",
    )
    client.make_bucket("edged")
    size = 40 * 5 * MiB
    source = work / "crash.mp4"
    write_random(source, size)
    config = push_config(work, server, bandwidth_limit="20MiB")
    command = edged_command(
        "uploads",
        "--config",
        str(config),
        "--data-dir",
        str(work / "crash-data"),
        "push",
        str(source),
    )
    done = 0
    try:
        while True:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
            )
            if done < kills:
                # A random moment once parts flow: the first PUT of this run, then 0-0.3 s.
                before = server.total_part_puts("crash.mp4")
                while server.total_part_puts("crash.mp4") == before and process.poll() is None:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0, 0.3))
            if process.poll() is not None or done >= kills:
                process.wait(timeout=300)
                break
            process.send_signal(signal.SIGKILL)
            process.wait()
            done += 1
        sent = server.total_part_puts("crash.mp4") * 5 * MiB  # every part is 5 MiB here
        return done, sent, size, 5 * MiB
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    args = parser.parse_args()
    server, endpoint = start_server()
    try:
        client = Minio(
            endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1"
        )
        client.make_bucket("edged")
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            source = work / "big.mp4"
            write_random(source, args.size_mib * MiB)
            minio_times, edged_times = [], []
            for round_number in range(args.rounds):
                minio_times.append(minio_upload(endpoint, source, f"minio/{round_number}.mp4"))
                edged_times.append(
                    asyncio.run(edged_upload(endpoint, source, f"edged/{round_number}.mp4", work))
                )
            kills, sent, size, part = crash_resends(work, args.kills, args.seed)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    size_mib = args.size_mib
    minio_median, edged_median = statistics.median(minio_times), statistics.median(edged_times)
    print(
        f"upload of {size_mib} MiB, part {PART // MiB} MiB, {PARALLEL} in parallel, "
        f"moto S3 on loopback, {args.rounds} rounds (median)"
    )
    print(f"{'uploader':28} {'seconds':>8} {'MiB/s':>8}")
    print(f"{'minio fput_object':28} {minio_median:8.2f} {size_mib / minio_median:8.1f}")
    print(f"{'edged (enqueue..verified)':28} {edged_median:8.2f} {size_mib / edged_median:8.1f}")
    print(f"throughput ratio edged/minio: {minio_median / edged_median:.2f} (target >= 0.9)")
    resent = sent - size
    print(
        f"crash test (seed {args.seed}): {kills} SIGKILLs at random moments over "
        f"{size // MiB} MiB in {part // MiB} MiB parts: {resent // MiB} MiB re-sent, "
        f"{resent / max(kills, 1) / part:.2f} parts per crash (target <= 1)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
