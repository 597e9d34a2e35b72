"""Classification from udev facts: a table of real-world nodes, names, and odd input."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.devices import capture_cards
from edged.devices.board import ProfileError
from edged.devices.capabilities import _open_problem, probe
from edged.devices.classify import (
    DeviceKind,
    NodeFacts,
    classify,
    load_capture_cards,
    stream_name,
)
from edged.devices.manager import describe

CARDS = capture_cards()


def uvc(
    name: str,
    vendor: str,
    product: str,
    *,
    capabilities: str = ":capture:",
    index: str = "0",
    serial: str = "",
    usb_path: str = "1-2",
) -> NodeFacts:
    return NodeFacts(
        sys_path="/sys/x",
        dev_node="/dev/video0",
        name=name,
        capabilities=capabilities,
        driver="uvcvideo",
        vendor_id=vendor,
        product_id=product,
        serial=serial,
        usb_path=usb_path,
        bus="usb",
        product=name,
        index=index,
    )


def platform(name: str, driver: str, capabilities: str = ":capture:") -> NodeFacts:
    return NodeFacts(
        sys_path="/sys/y",
        dev_node="/dev/video9",
        name=name,
        capabilities=capabilities,
        driver=driver,
        bus="platform",
    )


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        (uvc("HD Pro Webcam C920", "046d", "082d"), DeviceKind.WEBCAM),
        (
            uvc("HD Pro Webcam C920", "046d", "082d", capabilities=":", index="1"),
            DeviceKind.IGNORED,
        ),
        (uvc("Logitech BRIO", "046d", "085e"), DeviceKind.WEBCAM),
        (uvc("Integrated_Webcam_HD: Integrate", "0c45", "6713"), DeviceKind.WEBCAM),
        (uvc("Cam Link 4K", "0fd9", "0066"), DeviceKind.CAPTURE_CARD),
        (uvc("Game Capture HD60 S+", "0fd9", "006a"), DeviceKind.CAPTURE_CARD),
        (uvc("Live Gamer Portable 2 Plus", "07ca", "0553"), DeviceKind.CAPTURE_CARD),
        (uvc("USB Capture HDMI", "2935", "0001"), DeviceKind.CAPTURE_CARD),
        (uvc("USB Video", "534d", "2109"), DeviceKind.CAPTURE_CARD),
        (uvc("USB3 Video", "345f", "2130"), DeviceKind.CAPTURE_CARD),
        (uvc("UGREEN HDMI Capture", "1234", "5678"), DeviceKind.CAPTURE_CARD),
        (platform("unicam-image", "unicam"), DeviceKind.CSI_CAMERA),
        (platform("unicam-embedded", "unicam"), DeviceKind.IGNORED),
        (platform("rp1-cfe-csi2_ch0", "rp1-cfe"), DeviceKind.CSI_CAMERA),
        (platform("rp1-cfe-fe_stats", "rp1-cfe"), DeviceKind.IGNORED),
        (platform("bcm2835-codec-encode", "bcm2835-codec", ":video_m2m:"), DeviceKind.CODEC),
        (platform("bcm2835-isp-capture1", "bcm2835-isp"), DeviceKind.IGNORED),
        (platform("pispbe-output0", "pispbe"), DeviceKind.IGNORED),
        (platform("rpi-hevc-dec", "rpivid", ":video_m2m:"), DeviceKind.IGNORED),
        (platform("Dummy video device (0x0000)", "v4l2loopback"), DeviceKind.IGNORED),
        (platform("OBS Virtual Camera", "v4l2 loopback"), DeviceKind.IGNORED),
        (platform("vivid-000-vid-out", "vivid", ":video_output:"), DeviceKind.IGNORED),
    ],
)
def test_classification_table(facts: NodeFacts, kind: DeviceKind) -> None:
    assert classify(facts, CARDS).kind is kind


def test_metadata_node_reason() -> None:
    verdict = classify(uvc("C920", "046d", "082d", capabilities=":", index="1"), CARDS)
    assert verdict.reason == "UVC metadata node (no :capture: capability)"


def test_missing_capabilities_property() -> None:
    verdict = classify(uvc("C920", "046d", "082d", capabilities=""), CARDS)
    assert verdict.kind is DeviceKind.IGNORED
    assert verdict.reason == "udev gives no ID_V4L_CAPABILITIES"


@given(st.text(), st.text(), st.text(), st.text(), st.text())
def test_malformed_facts_never_raise(
    name: str, caps: str, vendor: str, serial: str, path: str
) -> None:
    facts = NodeFacts(
        sys_path=path,
        dev_node=path,
        name=name,
        capabilities=caps,
        vendor_id=vendor,
        product_id=vendor,
        serial=serial,
        usb_path=path,
    )
    verdict = classify(facts, CARDS)
    stream = stream_name(facts, verdict.label)
    assert stream and len(stream) <= 60
    assert all(char.isascii() and (char.isalnum() or char == "-") for char in stream)


def test_stream_name_survives_a_port_change() -> None:
    one = uvc("Cam Link 4K", "0fd9", "0066", serial="0004E1", usb_path="1-4")
    other = uvc("Cam Link 4K", "0fd9", "0066", serial="0004E1", usb_path="2-1.3")
    assert stream_name(one, "Elgato Cam Link 4K") == stream_name(other, "Elgato Cam Link 4K")
    assert stream_name(one, "Elgato Cam Link 4K") == "elgato-cam-link-4k-0004e1"


def test_stream_name_without_serial_uses_the_port() -> None:
    dongle = uvc("USB Video", "534d", "2109", usb_path="1-5")
    assert stream_name(dongle, "USB3 HDMI capture") == "usb3-hdmi-capture-usb-1-5"


def test_vanished_device_is_listed_with_the_reason() -> None:
    facts = uvc("HD Pro Webcam C920", "046d", "082d")
    gone = NodeFacts(**{**facts.__dict__, "dev_node": "/dev/video-that-vanished"})
    device = describe(gone, CARDS, probe)
    assert device.kind is DeviceKind.WEBCAM
    assert device.capabilities is None
    assert device.problem == "cannot open /dev/video-that-vanished: the device is gone (unplugged?)"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EACCES, "permission denied; add the edged user to the video group"),
        (errno.EBUSY, "busy, another program uses it"),
        (errno.ENODEV, "the device is gone (unplugged?)"),
    ],
)
def test_open_problems_say_what_to_do(code: int, expected: str) -> None:
    assert _open_problem("/dev/video0", OSError(code, "x")).endswith(expected)


def test_capture_card_table_errors(tmp_path: Path) -> None:
    table = tmp_path / "cards.toml"
    table.write_text('[[card]]\nusb = "0fd9-0066"\nname = "x"\n')
    with pytest.raises(ProfileError, match=r"card\[0\]\.usb must look like"):
        load_capture_cards(table)
    table.write_text("[[card]\n")
    with pytest.raises(ProfileError, match="cannot read capture card table"):
        load_capture_cards(table)
