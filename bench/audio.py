"""CPU cost of one stream's sound and its drift from the clock, through edged's own audio thread.

Runs `AudioCapture` (capture, resample, re-buffer, AAC-LC at 128 kb/s, 48 kHz stereo) on the
lavfi stand-in (`sine`, paced by `arealtime`) for --seconds, the packets counted and dropped
as a fan-out would. Prints the thread's CPU time as a share of one core (the stand-in's own sine
generation included, which a sound card does not cost) and the drift: where the last packet's
timestamp ends against the clock the timeline follows, and the samples the timeline had to drop
or insert. The stand-in runs on the box's clock, so drift here measures edged's stamping only;
a real card's crystal adds its own, which the timeline corrects (tests/unit/test_audio.py).

Usage: python bench/audio.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import threading
import time

from edged.media.audio import AudioSpec, paced_graph
from edged.media.audio_capture import AudioCapture
from edged.media.packets import EncodedPacket

SINE = "sine=frequency=440:sample_rate=48000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    spec = AudioSpec("lavfi", paced_graph(SINE), 48_000, 128_000)
    origin = time.monotonic()
    packets: list[EncodedPacket] = []
    dropped: dict[str, int] = {}
    failures: list[str] = []
    cpu: list[float] = []

    def deliver(packet: EncodedPacket, extradata: bytes) -> None:
        if not cpu:
            cpu.append(0.0)
        cpu[0] = time.thread_time()  # this is the audio thread: its CPU time so far
        packets.append(packet)

    def drop(stage: str, samples: int) -> None:
        dropped[stage] = dropped.get(stage, 0) + samples

    capture = AudioCapture("bench", spec, lambda: origin, deliver, drop, failures.append)
    capture.start()
    threading.Event().wait(args.seconds)
    now = time.monotonic() - origin
    last = packets[-1]
    capture.stop()
    end = float((last.pts + last.duration) * last.time_base)
    size = sum(len(p.data) for p in packets)
    print(f"audio: {len(packets)} AAC packets in {now:.1f} s, {size} B")
    print(f"cpu: {100 * cpu[0] / now:.2f} % of one core (capture + resample + AAC encode)")
    print(f"drift: last packet ends {1000 * (end - now):+.1f} ms from the clock (encoder delay in)")
    print(f"samples dropped or inserted: {dropped or 'none'}; failures: {failures or 'none'}")


if __name__ == "__main__":
    main()
