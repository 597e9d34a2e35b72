"""Device enumeration under umockdev (real libudev, described devices), hotplug through a real
pyudev Monitor, board detection on fixture trees, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.devices import trees
from tests.integration.test_daemon import http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def devices_json(tmp_path: Path, *device_trees: list[trees.Node]) -> dict[str, Any]:
    command = ["umockdev-run"]
    for index, tree in enumerate(device_trees):
        path = tmp_path / f"tree-{index}.umockdev"
        path.write_text(trees.render(tree))
        command += ["--device", str(path)]
    command += ["--", sys.executable, "-m", "edged", "devices", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def kinds(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {device["node"]: (device["kind"], device["stream"]) for device in report["devices"]}


def test_c920_capture_node_is_a_webcam_metadata_node_ignored(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.c920())
    assert kinds(report) == {
        "/dev/video0": ("webcam", "hd-pro-webcam-c920-a1b2c3d4"),
        "/dev/video1": ("ignored", None),
    }
    webcam = report["devices"][0]
    assert webcam["usb_id"] == "046d:082d"
    assert webcam["serial"] == "A1B2C3D4"
    assert webcam["driver"] == "uvcvideo"
    # umockdev's node is not a V4L2 device: listed all the same, with the reason.
    assert webcam["capabilities"] is None
    assert webcam["problem"].startswith("cannot open /dev/video0")
    assert "metadata" in report["devices"][1]["reason"]


def test_cam_link_is_a_capture_card(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.cam_link())
    assert kinds(report) == {
        "/dev/video0": ("capture_card", "elgato-cam-link-4k-0004e1a2b3c4"),
        "/dev/video1": ("ignored", None),
    }
    assert report["devices"][0]["reason"] == "USB id 0fd9:0066 is Elgato Cam Link 4K"


def test_raspberry_pi_4(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.raspberry_pi_4())
    found = kinds(report)
    assert found["/dev/video0"] == ("csi_camera", "csi-camera")
    assert {node for node, (kind, _) in found.items() if kind == "codec"} == {
        "/dev/video10",
        "/dev/video11",
        "/dev/video12",
        "/dev/video18",
    }
    assert [kind for kind, _ in found.values()].count("ignored") == 5
    assert not [kind for kind, _ in found.values() if kind in ("webcam", "capture_card")]
    assert report["board"]["profile"] == "rpi4"
    assert report["board"]["encoders"] == ["h264_v4l2m2m", "libx264"]


def test_raspberry_pi_5(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.raspberry_pi_5())
    found = kinds(report)
    assert found["/dev/video0"] == ("csi_camera", "csi-camera")
    assert [kind for kind, _ in found.values()].count("csi_camera") == 1
    assert [kind for kind, _ in found.values()].count("ignored") == len(found) - 1
    assert report["board"]["profile"] == "rpi5"
    assert report["board"]["encoders"] == ["libx264"]


def test_two_webcams_and_a_capture_card(tmp_path: Path) -> None:
    report = devices_json(tmp_path, trees.c920(), trees.brio(), trees.ms2109())
    cameras = {
        node: kind_stream
        for node, kind_stream in kinds(report).items()
        if kind_stream[0] != "ignored"
    }
    assert cameras == {
        "/dev/video0": ("webcam", "hd-pro-webcam-c920-a1b2c3d4"),
        "/dev/video2": ("webcam", "logitech-brio-9f3c2d10"),
        "/dev/video4": ("capture_card", "usb3-hdmi-capture-usb-1-5"),
    }
    assert len(report["devices"]) == 6


def test_devices_table_for_people(tmp_path: Path) -> None:
    path = tmp_path / "tree.umockdev"
    path.write_text(trees.render(trees.cam_link()))
    result = subprocess.run(
        ["umockdev-run", "--device", str(path), "--", sys.executable, "-m", "edged", "devices"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "capture_card" in result.stdout
    assert "elgato-cam-link-4k-0004e1a2b3c4" in result.stdout
    assert result.stdout.startswith("board: ")


def probe_lines(module: str) -> list[Any]:
    """The JSON lines a probe module of tests/devices printed under umockdev-wrapper, each
    hotplug step's report after the first line, which must say it started with no device."""
    result = subprocess.run(
        ["umockdev-wrapper", sys.executable, "-m", module],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"start": 0}
    return lines


def test_hotplug_through_a_real_monitor() -> None:
    lines = probe_lines("tests.devices.hotplug_probe")
    added, after_add, removed, after_remove, re_added, after_re_add, final = lines[1:]
    card_stream = "elgato-cam-link-4k-0004e1a2b3c4"
    assert {(e["action"], e["kind"], e["stream"]) for e in added["events"]} == {
        ("add", "capture_card", card_stream),
        ("add", "ignored", None),
    }
    assert after_add == {"devices": ["capture_card", "ignored"]}
    assert {(e["action"], e["stream"]) for e in removed["events"]} == {
        ("remove", card_stream),
        ("remove", None),
    }
    assert after_remove == {"devices": []}
    assert {(e["action"], e["node"], e["stream"]) for e in re_added["events"]} == {
        ("add", "/dev/video2", card_stream),
        ("add", "/dev/video3", None),
    }
    assert after_re_add == {"devices": ["capture_card", "ignored"]}
    metrics = final["metrics"]
    assert 'edged_device_events_total{action="add"} 4.0' in metrics
    assert 'edged_device_events_total{action="remove"} 2.0' in metrics
    assert 'edged_devices{kind="capture_card"} 1.0' in metrics


def test_daemon_lists_devices_and_counts_them(tmp_path: Path, start_daemon: StartDaemon) -> None:
    tree = tmp_path / "box.umockdev"
    tree.write_text(trees.render(trees.c920() + trees.cam_link(first_video=2)))
    daemon = start_daemon(
        {"mdns": {"enabled": False}}, wrapper=("umockdev-run", "--device", str(tree), "--")
    )
    status, body = http(daemon.url + "/api/v1/devices")
    assert status == 200
    report = json.loads(body)
    streams = {d["stream"] for d in report["devices"] if d["kind"] in ("webcam", "capture_card")}
    assert streams == {"hd-pro-webcam-c920-a1b2c3d4", "elgato-cam-link-4k-0004e1a2b3c4"}
    assert report["board"]["profile"] == "x86"
    _, metrics = http(daemon.url + "/metrics")
    assert b'edged_devices{kind="webcam"} 1.0' in metrics
    assert b'edged_devices{kind="capture_card"} 1.0' in metrics
    assert b'edged_devices{kind="ignored"} 2.0' in metrics
    assert any("board: Generic x86-64 (machine is x86_64)" in line for line in daemon.lines)
    assert daemon.stop() == 0


def test_node_without_permission_says_what_to_do(tmp_path: Path) -> None:
    """A real open() refused by the kernel: the probe runs as `nobody` on a root-only node."""
    node = tmp_path / "video7"
    node.touch(mode=0o600)
    tmp_path.chmod(0o755)
    code = "from edged.devices.capabilities import probe; import sys; print(probe(sys.argv[1])[1])"
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
            str(node),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"cannot open {node}: permission denied; add the edged user to the video group"
    )


def test_malformed_udev_values_do_not_stop_enumeration(tmp_path: Path) -> None:
    odd = trees.c920()
    odd[-2].attributes["name"] = "\\xff\\xfeWeird \\x00cam"
    odd[-2].properties["ID_V4L_CAPABILITIES"] = "::capture::garbage"
    del odd[0].attributes["idVendor"]
    report = devices_json(tmp_path, odd, trees.cam_link(first_video=2))
    found = kinds(report)
    assert found["/dev/video2"][0] == "capture_card"
    assert found["/dev/video0"][0] in ("webcam", "ignored")
