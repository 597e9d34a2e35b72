"""Audio inputs under umockdev (real libudev, described sound cards): `edged devices`, the
daemon's /api/v1/devices and metrics, and sound hotplug through a real pyudev Monitor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.devices import trees
from tests.integration.test_daemon import http
from tests.integration.test_devices import devices_json, probe_lines
from tests.support import until

pytestmark = pytest.mark.integration

BOX = (trees.ms2109_with_sound(), trees.c920_with_mic(), trees.lone_mic(), trees.hdmi_out())


def no_alsa(tmp_path: Path) -> dict[str, str]:
    """The environment of a daemon whose streams take the testbed's sound cards: an empty ALSA
    configuration refuses every hw: name at once, as on a box without the card. (With the
    system's, alsa-lib probes the testbed's control nodes, which overflows umockdev's preload fd
    map and aborts the process.)"""
    alsa_conf = tmp_path / "alsa.conf"
    alsa_conf.write_text("")
    return {"ALSA_CONFIG_PATH": str(alsa_conf)}


def paired(report: dict[str, Any]) -> dict[str, str | None]:
    return {device["node"]: device["audio"] for device in report["devices"]}


def inputs(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {device["alsa"]: (device["node"], device["video"]) for device in report["audio"]}


def test_each_camera_gets_the_sound_of_its_usb_device(tmp_path: Path) -> None:
    report = devices_json(tmp_path, *BOX)
    assert paired(report) == {
        "/dev/video0": "hw:CARD=C920,DEV=0",
        "/dev/video1": None,  # the C920's metadata node
        "/dev/video4": "hw:CARD=MS2109,DEV=0",
        "/dev/video5": None,
    }
    # The lone microphone is listed unpaired; its headphone output and the HDMI output are not.
    assert inputs(report) == {
        "hw:CARD=C920,DEV=0": ("/dev/snd/pcmC2D0c", "/dev/video0"),
        "hw:CARD=MS2109,DEV=0": ("/dev/snd/pcmC1D0c", "/dev/video4"),
        "hw:CARD=Device,DEV=0": ("/dev/snd/pcmC3D0c", None),
    }
    mic = next(device for device in report["audio"] if device["video"] is None)
    assert (mic["kind"], mic["label"], mic["usb_id"], mic["driver"]) == (
        "audio",
        "USB PnP Sound Device",
        "0d8c:0014",
        "snd-usb-audio",
    )
    assert report["board"]["profile"] == "x86"  # no ALSA name taken for a V4L2 name


def test_playback_only_box_has_no_audio_input(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.c920(), trees.hdmi_out())
    assert report["audio"] == []
    assert paired(report) == {"/dev/video0": None, "/dev/video1": None}


def test_devices_table_names_the_inputs(tmp_path: Path) -> None:
    command = ["umockdev-run"]
    for index, tree in enumerate(BOX):
        path = tmp_path / f"tree-{index}.umockdev"
        path.write_text(trees.render(tree))
        command += ["--device", str(path)]
    result = subprocess.run(
        [*command, "--", sys.executable, "-m", "edged", "devices"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    card = next(line for line in lines if line.startswith("/dev/video4 "))
    assert "hw:CARD=MS2109,DEV=0" in card
    mic = next(line for line in lines if line.startswith("hw:CARD=Device,DEV=0 "))
    assert "(unpaired)" in mic
    assert not [line for line in lines if "vc4hdmi0" in line or "pcmC0D0p" in line]


def test_sound_hotplug_through_a_real_monitor() -> None:
    lines = probe_lines("tests.devices.sound_hotplug_probe")
    plugged, sound_gone, sound_back, mic, final, pulled = lines[1:]
    card = "hw:CARD=MS2109,DEV=0"
    assert plugged == {
        "events": [
            ["add", "audio", "/dev/snd/pcmC1D0c", card],
            ["add", "capture_card", "/dev/video4", ""],
            ["add", "ignored", "/dev/video5", ""],
        ],
        "audio_for": card,
        "unpaired": [],
    }
    assert sound_gone == {
        "events": [["remove", "audio", "/dev/snd/pcmC1D0c", card]],
        "audio_for": None,
        "unpaired": [],
    }
    # Back under another card number, the same name; the HDMI output plugged before it sent none.
    assert sound_back == {
        "events": [["add", "audio", "/dev/snd/pcmC4D0c", card]],
        "audio_for": card,
        "unpaired": [],
    }
    assert mic == {
        "events": [["add", "audio", "/dev/snd/pcmC3D0c", "hw:CARD=Device,DEV=0"]],
        "audio_for": card,
        "unpaired": ["hw:CARD=Device,DEV=0"],
    }
    assert 'edged_devices{kind="audio"} 2.0' in final["metrics"]
    assert 'edged_device_events_total{action="add"} 5.0' in final["metrics"]
    assert pulled["audio_for"] is None
    assert pulled["unpaired"] == ["hw:CARD=Device,DEV=0"]


def test_daemon_reports_and_counts_audio(tmp_path: Path, start_daemon: StartDaemon) -> None:
    tree = tmp_path / "box.umockdev"
    tree.write_text(trees.render([node for nodes in BOX for node in nodes]))
    daemon = start_daemon(
        {"mdns": {"enabled": False}},
        env=no_alsa(tmp_path),
        wrapper=("umockdev-run", "--device", str(tree), "--"),
    )
    status, body = http(daemon.url + "/api/v1/devices")
    assert status == 200
    report = json.loads(body)
    assert paired(report)["/dev/video4"] == "hw:CARD=MS2109,DEV=0"
    assert paired(report)["/dev/video0"] == "hw:CARD=C920,DEV=0"
    assert inputs(report)["hw:CARD=Device,DEV=0"] == ("/dev/snd/pcmC3D0c", None)
    assert len(report["audio"]) == 3
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_devices{kind="audio"} 3.0' in metrics
    assert b'edged_devices{kind="ignored"} 2.0' in metrics  # playback PCMs are not counted
    assert any("device /dev/snd/pcmC1D0c: audio" in line for line in daemon.lines)
    assert daemon.stop() == 0


def test_daemon_follows_a_sound_card_plugged_and_pulled(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    daemon = start_daemon(
        {"mdns": {"enabled": False}},
        env=no_alsa(tmp_path),
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )

    def audio_of_the_card() -> tuple[str | None, list[tuple[str, str | None]]]:
        _, body = http(daemon.url + "/api/v1/devices")
        report = json.loads(body)
        listed = [(device["alsa"], device["video"]) for device in report["audio"]]
        return paired(report).get("/dev/video0"), listed

    daemon.send("plug 1-4 0 6")
    daemon.wait_for(re.compile(r"device add /dev/video0: capture_card"))
    assert audio_of_the_card() == (None, [])
    daemon.send("plug-sound 1-4 1 CamLink4K")
    daemon.wait_for(re.compile(r"device add /dev/snd/pcmC1D0c: audio, hw:CARD=CamLink4K,DEV=0"))
    card = "hw:CARD=CamLink4K,DEV=0"
    assert audio_of_the_card() == (card, [(card, "/dev/video0")])
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_devices{kind="audio"} 1.0' in metrics
    daemon.send("unplug-sound")
    daemon.wait_for(re.compile(r"device remove /dev/snd/pcmC1D0c: audio"))
    assert audio_of_the_card() == (None, [])
    daemon.send("plug-sound 1-4 2 CamLink4K")  # numbered anew by the kernel, the same name
    daemon.wait_for(re.compile(r"device add /dev/snd/pcmC2D0c: audio, hw:CARD=CamLink4K,DEV=0"))
    assert audio_of_the_card() == (card, [(card, "/dev/video0")])
    assert daemon.stop() == 0


def test_malformed_sound_values_do_not_stop_enumeration(tmp_path: Path) -> None:
    no_id = trees.lone_mic()
    del no_id[2].attributes["id"]  # the card
    odd = trees.usb_audio("1-5", 2, 5, "\\xff bad,id", ["D0c", "Dxc"])
    report = devices_json(tmp_path, trees.ms2109() + odd, no_id, trees.c920_with_mic())
    assert inputs(report) == {
        "hw:CARD=5,DEV=0": ("/dev/snd/pcmC5D0c", "/dev/video4"),  # the card number stands in
        "hw:CARD=3,DEV=0": ("/dev/snd/pcmC3D0c", None),
        "hw:CARD=C920,DEV=0": ("/dev/snd/pcmC2D0c", "/dev/video0"),
    }


def test_a_stream_takes_its_sound_card_on_hotplug_and_the_others_run_on(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    """No [audio] configuration: the capture card's stream takes the sound card plugged into its
    USB device. There is no ALSA device here, so the stream shows the card and runs video-only
    with the reason; pulled, it runs on; plugged back, it takes the card again. Only that stream
    restarts: the test pattern beside it never does."""
    settings = {
        "mdns": {"enabled": False},
        "media": {
            "test_pattern": "on",
            "pattern_size": "320x240",
            "pattern_fps": 15,
            "v4l2_stand_in": "testsrc2=size=320x240:rate=15,realtime",
        },
    }
    daemon = start_daemon(
        settings,
        env=no_alsa(tmp_path),
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )
    stream, card = "elgato-cam-link-4k-0004e1a2b3c4", "hw:CARD=CamLink4K,DEV=0"

    def status() -> dict[str, tuple[str, str, str | None]]:
        _, body = http(daemon.url + "/api/v1/streams")
        return {
            s["stream"]: (s["state"], s["audio"], s["audio_device"])
            for s in json.loads(body)["streams"]
        }

    def shows(audio: str) -> bool:
        state, line, _ = status().get(stream, ("", "", None))
        return state == "up" and line.startswith(audio)

    daemon.send("plug 1-4 0 6")
    daemon.wait_for(re.compile(rf"stream {stream}: starting -> up"))
    until(lambda: shows("no audio device"), 20, "the card's stream up without sound")
    daemon.send("plug-sound 1-4 1 CamLink4K")
    until(lambda: shows(f"video only: cannot open audio {card}"), 30, "the card taken")
    assert status()[stream][2] == card
    assert status()["test-pattern"][1:] == ("no audio device", None)

    daemon.send("unplug-sound")
    daemon.wait_for(re.compile(rf"stream {stream}: sound card {card} unplugged"))
    assert status()[stream] == ("up", f"video only: {card} unplugged", card)

    daemon.send("plug-sound 1-4 2 CamLink4K")  # another card number, the same ALSA name
    daemon.wait_for(re.compile(r"device add /dev/snd/pcmC2D0c: audio"))
    until(lambda: shows(f"video only: cannot open audio {card}"), 30, "the card taken again")
    assert status()[stream][2] == card
    assert daemon.stop() == 0
    launches = [
        line for line in daemon.lines if re.search(r"stream \S+: \w+ \d+x\d+@\d+ with ", line)
    ]
    # Plugged, its sound card plugged, plugged again: three starts; the pull is no restart.
    assert sum(f"stream {stream}: " in line for line in launches) == 3, launches
    assert sum("stream test-pattern: " in line for line in launches) == 1, launches
