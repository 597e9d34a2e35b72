"""Uploads over real links (#20): the uploader in a network namespace with two veth uplinks,
each rate-limited with `tc ... tbf`, to moto in a second namespace (tests/netns.py); what left
by each link is read from its interface's byte counter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.netns import REPO, Uplinks, unavailable
from tests.s3server import MotoProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]
MiB = 1024 * 1024
RATES_MBIT = (16, 32)  # short tests; bench/uplinks.py uses 4 and 8

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


@pytest.fixture
def links() -> Iterator[tuple[Uplinks, MotoProcess]]:
    with Uplinks(RATES_MBIT) as made:
        yield made, made.start_s3()


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
