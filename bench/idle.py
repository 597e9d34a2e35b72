"""Idle footprint of `edged run` (no camera, no config) beside a bare Python event loop.

Prints RSS (max, last) and CPU% over the window for both and the ratio edged / reference.
Usage: python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import psutil

REFERENCE = "import asyncio; asyncio.run(asyncio.Event().wait())"
READY = re.compile(r"ready: http://")
LOOPBACK_CONFIG = """
[http]
host = "127.0.0.1"
port = 0
[mdns]
interfaces = ["127.0.0.1"]
[media]
test_pattern = "{pattern}"
record_test_pattern = true
"""


@dataclass
class Footprint:
    rss_max_mib: float
    rss_last_mib: float
    cpu_percent: float


def measure(process: subprocess.Popen[str], seconds: float) -> Footprint:
    handle = psutil.Process(process.pid)
    start_cpu = sum(handle.cpu_times()[:2])
    start = time.monotonic()
    rss_max = 0
    rss = 0
    while time.monotonic() - start < seconds:
        rss = handle.memory_info().rss
        rss_max = max(rss_max, rss)
        time.sleep(0.5)
    cpu = sum(handle.cpu_times()[:2]) - start_cpu
    wall = time.monotonic() - start
    return Footprint(rss_max / 2**20, rss / 2**20, 100 * cpu / wall)


def start_edged(data_dir: str, config: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", config, "--data-dir", data_dir],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if READY.search(line):
            return process
    raise SystemExit("edged did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = {}
        for label, pattern in (("edged, no stream", "off"), ("edged, test pattern", "auto")):
            config = os.path.join(work, f"edged-{pattern}.toml")
            with open(config, "w") as handle:
                handle.write(LOOPBACK_CONFIG.format(pattern=pattern))
            edged = start_edged(os.path.join(work, f"data-{pattern}"), config)
            try:
                time.sleep(2)  # let it settle after start-up
                results[label] = measure(edged, args.seconds)
            finally:
                edged.terminate()
                edged.wait(timeout=15)
        reference = subprocess.Popen([sys.executable, "-c", REFERENCE], text=True)
        try:
            time.sleep(2)
            results["python asyncio idle"] = measure(reference, 5)
        finally:
            reference.terminate()
            reference.wait(timeout=15)
    print(
        f"footprint over {args.seconds:.0f} s with no camera: without any stream, and with the "
        "default test pattern (1280x720@30, encoded and recorded); reference: a bare asyncio "
        "loop over 5 s"
    )
    print(f"{'process':22} {'RSS max MiB':>12} {'RSS last MiB':>13} {'CPU %':>8}")
    for name, result in results.items():
        print(
            f"{name:22} {result.rss_max_mib:12.1f} {result.rss_last_mib:13.1f} "
            f"{result.cpu_percent:8.2f}"
        )
    reference_result = results["python asyncio idle"]
    for label in ("edged, no stream", "edged, test pattern"):
        ratio = results[label].rss_max_mib / reference_result.rss_max_mib
        print(f"ratio RSS {label} / reference: {ratio:.1f}x")


if __name__ == "__main__":
    main()
