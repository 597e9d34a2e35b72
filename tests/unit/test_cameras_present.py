"""`edged_cameras_present` is read by the metrics' exposition thread while the event loop adds and
removes streams (hotplug): the count must never fail a scrape (review of #19, finding 13)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edged.daemon import cameras_present


@dataclass
class Entry:
    device: object | None


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads switch every microsecond, so a count that iterates the live dict meets a change."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_cameras_present_counts_devices_not_the_test_pattern() -> None:
    streams = {"cam-a": Entry(object()), "pattern": Entry(None), "cam-b": Entry(object())}
    assert cameras_present(streams) == 2
    assert cameras_present({}) == 0


def test_a_hotplug_during_a_scrape_never_fails_the_count(switching_often: None) -> None:
    streams: dict[str, Entry] = {f"cam-{i}": Entry(object()) for i in range(200)}
    stop = threading.Event()

    def hotplug() -> None:
        i = 0
        while not stop.is_set():
            streams[f"new-{i % 50}"] = Entry(object())
            streams.pop(f"new-{(i + 25) % 50}", None)
            i += 1

    plugger = threading.Thread(target=hotplug)
    plugger.start()
    try:
        counts = [cameras_present(streams) for _ in range(2000)]
    finally:
        stop.set()
        plugger.join()
    assert all(200 <= count <= 250 for count in counts)
