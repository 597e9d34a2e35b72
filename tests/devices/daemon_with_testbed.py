"""`edged run` in a process that also owns a umockdev Testbed (run it under umockdev-wrapper).

The test plugs and unplugs a capture card, and a sound card on a USB device, by writing lines
to stdin:
  plug PORT FIRST_VIDEO BUS_DEVICE
  unplug
  plug-sound PORT CARD CARD_ID      (a USB audio interface with one capture PCM)
  unplug-sound
Everything else is the real daemon with real udev (libudev reads the testbed).
"""

from __future__ import annotations

import sys
import threading

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from edged.cli import main  # noqa: E402
from tests.devices import trees  # noqa: E402


def control(testbed: UMockdev.Testbed) -> None:
    card: list[trees.Node] = []
    sound: list[trees.Node] = []
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["plug"]:
            port, first_video, bus_device = words[1], int(words[2]), int(words[3])
            card = trees.cam_link(port=port, first_video=first_video, bus_device=bus_device)
            testbed.add_from_string(trees.render(card))
            for node in card:
                testbed.uevent("/sys" + node.path, "add")
        elif words[:1] == ["unplug"]:
            for node in reversed(card):
                testbed.uevent("/sys" + node.path, "remove")
                testbed.remove_device("/sys" + node.path)
            card = []
        elif words[:1] == ["plug-sound"]:
            sound = trees.usb_audio(words[1], 2, int(words[2]), words[3], ["D0c"])
            testbed.add_from_string(trees.render(sound))  # umockdev sends the "add" uevents
        elif words[:1] == ["unplug-sound"]:
            for node in reversed(sound):
                testbed.uevent("/sys" + node.path, "remove")
                testbed.remove_device("/sys" + node.path)
            sound = []


if __name__ == "__main__":
    bed = UMockdev.Testbed.new()
    threading.Thread(target=control, args=(bed,), daemon=True).start()
    sys.exit(main(["run", *sys.argv[1:]]))
