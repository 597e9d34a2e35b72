"""`edged doctor`'s ear on real sources (lavfi stand-ins; there is no ALSA device here): a tone's
peak, digital silence, a device that cannot open, one that is too slow to give its second."""

from __future__ import annotations

import math

import pytest

from edged.media.audio import AudioSpec, paced_graph
from edged.media.listen import listen_all

pytestmark = pytest.mark.integration

SINE = "sine=frequency=440:sample_rate=48000"  # lavfi's sine: amplitude 1/8, -18.06 dBFS


def lavfi(graph: str) -> AudioSpec:
    return AudioSpec("lavfi", graph, 48000, 128000)


def test_a_second_of_each_source_at_once() -> None:
    tone, silence, absent = listen_all(
        [
            lavfi(paced_graph(SINE)),
            lavfi(paced_graph("anullsrc=r=48000:cl=stereo")),
            AudioSpec("alsa", "hw:CARD=Absent,DEV=0", 48000, 128000),
        ]
    )
    assert tone.error == "" and tone.seconds >= 1.0
    assert tone.peak_dbfs == pytest.approx(20 * math.log10(1 / 8), abs=0.1)
    assert (silence.error, silence.peak_dbfs) == ("", -math.inf) and silence.seconds >= 1.0
    assert absent.peak_dbfs == -math.inf
    assert absent.error.startswith("cannot open audio hw:CARD=Absent,DEV=0")


def test_a_source_too_slow_for_its_deadline_is_reported_and_stops() -> None:
    # A twentieth of real time: its second of sound would take 20 s.
    slow = lavfi("anullsrc=r=48000:cl=stereo,arealtime=speed=0.05")
    (heard,) = listen_all([slow], seconds=1.0, timeout=0.5)
    assert (heard.peak_dbfs, heard.error) == (-math.inf, "no sound in 0.5 s")
    # Told to stop at the deadline, it ends at its next buffer (the leak guard waits for it).


def test_nothing_to_listen_to() -> None:
    assert listen_all([]) == []
