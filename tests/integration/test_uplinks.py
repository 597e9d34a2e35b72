"""Uploads over real links (#20): the uploader in a network namespace with two veth uplinks,
each rate-limited with `tc ... tbf`, to moto in a second namespace (tests/netns.py); what left
by each link is read from its interface's byte counter."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.upload_support import write_random
from tests.netns import REPO, Uplinks, driver_config, unavailable
from tests.s3server import MotoProcess
from tests.support import until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]
MiB = 1024 * 1024
RATES_MBIT = (16, 32)  # short tests; bench/uplinks.py uses 4 and 8
DOWN_FILE = 12 * MiB  # three parts: the fast link is set down in its first, the rest by the slow

PUT_BY = """
import os, sys
from edged.upload.s3 import S3Store
from tests.s3server import ACCESS_KEY, SECRET_KEY
endpoint, address, interface, size = sys.argv[1:5]
store = S3Store(endpoint=endpoint, secure=False, region="us-east-1", bucket="edged",
    access_key=ACCESS_KEY, secret_key=SECRET_KEY, source_address=address, interface=interface)
store.put(f"gala/{interface or address}.bin", os.urandom(int(size)), "", "application/octet-stream")
print(store.bound_to_device)
"""


@pytest.fixture(scope="module")
def shared_links() -> Iterator[tuple[Uplinks, MotoProcess]]:
    """One pair of namespaces and one S3 server for the module (each costs seconds to start)."""
    with Uplinks(RATES_MBIT) as made:
        yield made, made.start_s3()


@pytest.fixture
def links(shared_links: tuple[Uplinks, MotoProcess]) -> Iterator[tuple[Uplinks, MotoProcess]]:
    """The shared links, every one of them up again after the test."""
    yield shared_links
    net, _ = shared_links
    for link in net.links:
        net.set_up(link)


def put_by(net: Uplinks, s3: MotoProcess, address: str, interface: str, size: int) -> str:
    done = subprocess.run(
        net.command(sys.executable, "-c", PUT_BY, s3.endpoint, address, interface, str(size)),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("by_device", [True, False], ids=["device", "source-address"])
def test_a_store_bound_to_an_uplink_leaves_by_it(
    links: tuple[Uplinks, MotoProcess], by_device: bool
) -> None:
    net, s3 = links
    size = 2 * MiB
    for link in net.links:
        before = [net.tx_bytes(each) for each in net.links]
        bound = put_by(net, s3, link.address, link.interface if by_device else "", size)
        assert bound == str(by_device)
        grew = [net.tx_bytes(each) - was for each, was in zip(net.links, before, strict=True)]
        assert grew[link.index] > size
        assert sum(grew) - grew[link.index] < size // 100  # the other link: a stray ARP at most


class Driver:
    """tests/uplink_driver.py in the client namespace; its JSON lines read on a thread."""

    def __init__(
        self, net: Uplinks, config: Path, data_dir: Path, *files: str, stdin: bool = False
    ) -> None:
        data_dir.mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            net.command(
                sys.executable, "-m", "tests.uplink_driver", str(config), str(data_dir), *files
            ),
            cwd=REPO,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout: float = 45.0) -> dict[str, Any]:
        """The driver's next line; fails with its stderr when it ended without one."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            said = self.close()
            raise AssertionError(f"the driver said nothing more within {timeout} s:\n{said}")
        return line

    def send(self, line: str) -> None:
        """A line to the driver's stdin (--queue: a file to queue)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def close(self) -> str:
        """End the driver (killed if still running); what it said on stderr."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None and self.process.stderr is not None
        said = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return said


def carried(net: Uplinks, before: Sequence[int]) -> list[int]:
    return [net.tx_bytes(link) - was for link, was in zip(net.links, before, strict=True)]


def test_a_24_mib_file_travels_over_both_links(
    links: tuple[Uplinks, MotoProcess], tmp_path: Path
) -> None:
    net, s3 = links
    source = tmp_path / "both-links.mp4"
    write_random(source, 24 * MiB)
    before = [net.tx_bytes(link) for link in net.links]
    driver = Driver(net, driver_config(tmp_path, s3), tmp_path / "data", f"recording:{source}")
    try:
        assert driver.next()["uplinks"]["recording"] == ["uplink0", "uplink1"]
        result = driver.next()
    finally:
        driver.close()
    assert result["state"] == "done", result["error"]
    sent = carried(net, before)
    rate_mbit = 24 * MiB * 8 / result["seconds"] / 1e6
    print(
        f"24 MiB over {RATES_MBIT} Mbit/s: {result['seconds']:.1f} s, {rate_mbit:.1f} Mbit/s "
        f"({rate_mbit / sum(RATES_MBIT):.2f} of the sum); by link {sent}; "
        f"{result['parts']} parts of {result['part_size'] // MiB} MiB"
    )
    assert all(each > 4 * MiB for each in sent), sent  # each link a good share
    slow, fast = net.links
    assert sent[fast.index] > 1.5 * sent[slow.index], sent  # by rate: 2x, as parts allow
    assert sum(sent) > 24 * MiB


def test_a_link_set_down_mid_file_leaves_it_to_the_other(
    links: tuple[Uplinks, MotoProcess], tmp_path: Path
) -> None:
    net, s3 = links
    slow, fast = net.links
    source = tmp_path / "link-down.mp4"
    write_random(source, DOWN_FILE)
    before = [net.tx_bytes(link) for link in net.links]
    config = driver_config(tmp_path, s3, part_mib=5)  # a multipart upload: 5, 5 and 2 MiB
    driver = Driver(net, config, tmp_path / "data", f"recording:{source}")
    try:
        assert driver.next()["uplinks"]["recording"] == ["uplink0", "uplink1"]
        until(lambda: net.tx_bytes(fast) - before[fast.index] > 3 * MiB, 30, "the fast link sends")
        net.set_down(fast)
        down_at = carried(net, before)
        result = driver.next()
    finally:
        driver.close()
    assert result["state"] == "done", result["error"]  # completed and verified
    assert result["usable"] == ["uplink0"]  # the link set down was dropped, not waited for
    sent = carried(net, before)
    assert down_at[fast.index] < DOWN_FILE  # it went down mid-file
    assert sent[slow.index] > DOWN_FILE - down_at[fast.index]  # the rest by the other


def test_a_metered_link_carries_a_clip_but_not_a_recording(
    links: tuple[Uplinks, MotoProcess], tmp_path: Path
) -> None:
    net, s3 = links  # each test sends its own keys to the module's server
    metered = net.links[0]
    config = driver_config(tmp_path, s3, metered=(True, False), part_mib=5)
    sent = {}
    for kind in ("clip", "recording"):
        source = tmp_path / f"{kind}.mp4"
        write_random(source, 12 * MiB)
        before = [net.tx_bytes(link) for link in net.links]
        driver = Driver(net, config, tmp_path / f"data-{kind}", f"{kind}:{source}")
        try:
            usable = driver.next()["uplinks"]
            result = driver.next()
        finally:
            driver.close()
        assert result["state"] == "done", result["error"]
        sent[kind] = carried(net, before)
    assert usable == {
        "guest": ["uplink0", "uplink1"],
        "clip": ["uplink0", "uplink1"],
        "manifest": ["uplink0", "uplink1"],
        "recording": ["uplink1"],
    }
    assert sent["clip"][metered.index] > 4 * MiB  # a part of the clip at least
    assert sent["recording"][metered.index] < MiB // 4  # none of the recording


PUT_SLOWLY = """
import os, sys
from edged.upload.s3 import S3Store
from tests.s3server import ACCESS_KEY, SECRET_KEY
endpoint, address, interface, size = sys.argv[1:5]
store = S3Store(endpoint=endpoint, secure=False, region="us-east-1", bucket="edged",
    access_key=ACCESS_KEY, secret_key=SECRET_KEY, source_address=address, interface=interface,
    connect_timeout=0.5)
store.put("gala/paced.bin", os.urandom(int(size)), "", "application/octet-stream")
"""


def test_a_part_longer_than_the_connect_timeout_to_send_is_sent(
    links: tuple[Uplinks, MotoProcess],
) -> None:
    """A part on a new connection was one sendall under the connect timeout (5 s): a 16 MiB
    part over a 4 Mbit/s link never went. Here: 0.5 s, and 8 MiB at 16 Mbit/s (about 4 s)."""
    net, s3 = links
    slow = net.links[0]
    done = subprocess.run(
        net.command(
            sys.executable, "-c", PUT_SLOWLY, s3.endpoint, slow.address, slow.interface,
            str(8 * MiB),
        ),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-600:]


def test_a_clip_queued_during_a_recording_upload_finishes_first(
    links: tuple[Uplinks, MotoProcess], tmp_path: Path
) -> None:
    """The uploader itself (setup.build_uploader) in the client namespace: the clip goes at the
    recording's next part boundary, and the recording ends after it."""
    net, s3 = links
    recording, clip = tmp_path / "long-take.mp4", tmp_path / "highlight.mp4"
    write_random(recording, 24 * MiB)
    write_random(clip, 2 * MiB)
    before = [net.tx_bytes(link) for link in net.links]
    config = driver_config(tmp_path, s3, part_mib=5)
    driver = Driver(net, config, tmp_path / "data", "--queue", stdin=True)
    try:
        driver.send(f"recording:{recording}")
        # Under way: the recording yields at its next part boundary, its last part still to go.
        until(lambda: sum(carried(net, before)) > MiB, 30, "the recording is under way")
        driver.send(f"clip:{clip}")
        driver.close_stdin()
        ended = [driver.next(), driver.next()]
    finally:
        driver.close()
    assert [(line["kind"], line["state"]) for line in ended] == [
        ("clip", "done"),
        ("recording", "done"),
    ], ended
