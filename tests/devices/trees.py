"""Device trees for umockdev, from the real udev attributes of the hardware edged meets.

Each tree renders to umockdev's text format (`P:` path, `N:` node, `E:` udev property, `A:` sysfs
attribute); parents come before their children, as `umockdev-record` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

XHCI = "/devices/pci0000:00/0000:00:14.0/usb1"


@dataclass
class Node:
    path: str
    properties: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    dev: str = ""

    def render(self) -> str:
        lines = [f"P: {self.path}"]
        if self.dev:
            lines.append(f"N: {self.dev}")
        lines += [f"E: {key}={value}" for key, value in self.properties.items()]
        lines += [f"A: {key}={value}" for key, value in self.attributes.items()]
        return "\n".join(lines) + "\n"


def render(nodes: list[Node]) -> str:
    return "\n".join(node.render() for node in nodes)


def usb_device(*, port: str, vendor: str, product: str, attributes: dict[str, str]) -> Node:
    """The USB device itself (DEVTYPE usb_device): the parent its video and audio share."""
    bus_device = int(attributes["devnum"])
    return Node(
        f"{XHCI}/{port}",
        {
            "SUBSYSTEM": "usb",
            "DEVTYPE": "usb_device",
            "DRIVER": "usb",
            "DEVNAME": f"/dev/bus/usb/001/{bus_device:03d}",
            "PRODUCT": f"{int(vendor, 16):x}/{int(product, 16):x}/100",
        },
        attributes,
        dev=f"bus/usb/001/{bus_device:03d}",
    )


def sound_card(parent: str, card: int, card_id: str, pcms: list[str], driver: str) -> list[Node]:
    """An ALSA card under `parent` (a USB interface or a platform device): the card, its control
    node and its PCMs, named as the kernel does ("D0c" capture device 0, "D0p" playback)."""
    path = f"{parent}/sound/card{card}"
    sound = {"SUBSYSTEM": "sound", "MAJOR": "116"} | ({"ID_USB_DRIVER": driver} if driver else {})
    nodes = [
        Node(
            path,
            {"SUBSYSTEM": "sound", "ID_USB_DRIVER": driver},
            {"id": card_id, "number": str(card)},
        ),
        Node(
            f"{path}/controlC{card}",
            sound | {"DEVNAME": f"/dev/snd/controlC{card}"},
            {"dev": f"116:{card * 32}"},
            dev=f"snd/controlC{card}",
        ),
    ]
    for offset, pcm in enumerate(pcms, start=1):
        name = f"pcmC{card}{pcm}"
        nodes.append(
            Node(
                f"{path}/{name}",
                sound | {"DEVNAME": f"/dev/snd/{name}"},
                {"pcm_class": "generic", "id": "USB Audio", "dev": f"116:{card * 32 + offset}"},
                dev=f"snd/{name}",
            )
        )
    return nodes


def usb_audio(port: str, interface: int, card: int, card_id: str, pcms: list[str]) -> list[Node]:
    """The USB Audio Class interface of a USB device and the sound card below it."""
    path = f"{XHCI}/{port}/{port}:1.{interface}"
    node = Node(
        path,
        {
            "SUBSYSTEM": "usb",
            "DEVTYPE": "usb_interface",
            "DRIVER": "snd-usb-audio",
            "INTERFACE": "1/1/0",
        },
        {"bInterfaceClass": "01", "bInterfaceNumber": f"{interface:02d}"},
    )
    return [node, *sound_card(path, card, card_id, pcms, "snd-usb-audio")]


def uvc_device(
    *,
    port: str,
    vendor: str,
    product: str,
    model: str,
    serial: str,
    first_video: int,
    bus_device: int,
) -> list[Node]:
    """A USB video class device: the USB device, its interface, the capture and metadata nodes."""
    usb_path = f"{XHCI}/{port}"
    interface = f"{usb_path}/{port}:1.0"
    model_id = model.replace(" ", "_")
    common = {
        "ID_BUS": "usb",
        "ID_VENDOR_ID": vendor,
        "ID_MODEL_ID": product,
        "ID_MODEL": model_id,
        "ID_USB_DRIVER": "uvcvideo",
        "ID_USB_INTERFACE_NUM": "00",
        "ID_PATH": f"pci-0000:00:14.0-usb-0:{port.split('-', 1)[1]}:1.0",
        "ID_V4L_PRODUCT": model,
        "ID_V4L_VERSION": "2",
        "SUBSYSTEM": "video4linux",
    }
    if serial:
        common |= {"ID_SERIAL": f"{vendor}_{model_id}_{serial}", "ID_SERIAL_SHORT": serial}
    usb_attributes = {
        "idVendor": vendor,
        "idProduct": product,
        "product": model,
        "speed": "480",
        "busnum": "1",
        "devnum": str(bus_device),
    }
    if serial:
        usb_attributes["serial"] = serial
    nodes = [
        usb_device(port=port, vendor=vendor, product=product, attributes=usb_attributes),
        Node(
            interface,
            {
                "SUBSYSTEM": "usb",
                "DEVTYPE": "usb_interface",
                "DRIVER": "uvcvideo",
                "INTERFACE": "14/1/0",
            },
            {"bInterfaceClass": "0e", "bInterfaceNumber": "00"},
        ),
    ]
    for offset, (capabilities, index) in enumerate(((":capture:", "0"), (":", "1"))):
        number = first_video + offset
        nodes.append(
            Node(
                f"{interface}/video4linux/video{number}",
                common
                | {
                    "DEVNAME": f"/dev/video{number}",
                    "MAJOR": "81",
                    "MINOR": str(number),
                    "ID_V4L_CAPABILITIES": capabilities,
                },
                {"name": model, "index": index, "dev": f"81:{number}"},
                dev=f"video{number}",
            )
        )
    return nodes


def platform_nodes(device: str, driver: str, names: list[tuple[int, str, str]]) -> list[Node]:
    """A platform device (SoC block) with video nodes: (number, name, capabilities)."""
    parent = f"/devices/platform/soc/{device}"
    nodes = [
        Node(parent, {"SUBSYSTEM": "platform", "DRIVER": driver, "OF_NAME": device.split(".")[0]})
    ]
    for number, name, capabilities in names:
        nodes.append(
            Node(
                f"{parent}/video4linux/video{number}",
                {
                    "SUBSYSTEM": "video4linux",
                    "DEVNAME": f"/dev/video{number}",
                    "MAJOR": "81",
                    "MINOR": str(number),
                    "ID_PATH": f"platform-{device}",
                    "ID_V4L_CAPABILITIES": capabilities,
                    "ID_V4L_PRODUCT": name,
                    "ID_V4L_VERSION": "2",
                },
                {"name": name, "index": "0", "dev": f"81:{number}"},
                dev=f"video{number}",
            )
        )
    return nodes


def c920(port: str = "1-2", serial: str = "A1B2C3D4", first_video: int = 0) -> list[Node]:
    """Logitech HD Pro Webcam C920 (046d:082d)."""
    return uvc_device(
        port=port,
        vendor="046d",
        product="082d",
        model="HD Pro Webcam C920",
        serial=serial,
        first_video=first_video,
        bus_device=4,
    )


def brio(first_video: int = 2) -> list[Node]:
    """Logitech BRIO (046d:085e)."""
    return uvc_device(
        port="1-3",
        vendor="046d",
        product="085e",
        model="Logitech BRIO",
        serial="9F3C2D10",
        first_video=first_video,
        bus_device=5,
    )


def cam_link(port: str = "1-4", first_video: int = 0, bus_device: int = 6) -> list[Node]:
    """Elgato Cam Link 4K (0fd9:0066): UVC, so only its USB id tells it from a webcam."""
    return uvc_device(
        port=port,
        vendor="0fd9",
        product="0066",
        model="Cam Link 4K",
        serial="0004E1A2B3C4",
        first_video=first_video,
        bus_device=bus_device,
    )


def ms2109(first_video: int = 4) -> list[Node]:
    """A "USB3 HDMI capture" dongle (MacroSilicon MS2109, 534d:2109), no serial number."""
    return uvc_device(
        port="1-5",
        vendor="534d",
        product="2109",
        model="USB Video",
        serial="",
        first_video=first_video,
        bus_device=7,
    )


def raspberry_pi_4() -> list[Node]:
    """unicam (a CSI camera), bcm2835-codec and bcm2835-isp nodes, as on a Pi 4 with a camera."""
    return (
        platform_nodes(
            "fe801000.csi",
            "unicam",
            [(0, "unicam-image", ":capture:"), (1, "unicam-embedded", ":capture:")],
        )
        + platform_nodes(
            "bcm2835-codec",
            "bcm2835-codec",
            [
                (10, "bcm2835-codec-decode", ":video_m2m:"),
                (11, "bcm2835-codec-encode", ":video_m2m:"),
                (12, "bcm2835-codec-isp", ":video_m2m:"),
                (18, "bcm2835-codec-image_fx", ":video_m2m:"),
            ],
        )
        + platform_nodes(
            "bcm2835-isp",
            "bcm2835-isp",
            [
                (13, "bcm2835-isp-output0", ":video_output:"),
                (14, "bcm2835-isp-capture1", ":capture:"),
                (15, "bcm2835-isp-capture2", ":capture:"),
                (16, "bcm2835-isp-capture3", ":capture:"),
            ],
        )
    )


def raspberry_pi_5() -> list[Node]:
    """rp1-cfe (CSI-2 front end, a camera attached) and the pispbe back-end ISP nodes."""
    cfe = [(index, f"rp1-cfe-csi2_ch{index}", ":capture:") for index in range(4)]
    cfe += [
        (4, "rp1-cfe-fe_image0", ":capture:"),
        (5, "rp1-cfe-fe_image1", ":capture:"),
        (6, "rp1-cfe-fe_stats", ":capture:"),
        (7, "rp1-cfe-fe_config", ":video_output:"),
    ]
    backend = [
        (20, "pispbe-input", ":video_output:"),
        (21, "pispbe-tdn_input", ":video_output:"),
        (22, "pispbe-stitch_input", ":video_output:"),
        (23, "pispbe-output0", ":capture:"),
        (24, "pispbe-output1", ":capture:"),
        (25, "pispbe-tdn_output", ":capture:"),
        (26, "pispbe-stitch_output", ":capture:"),
        (27, "pispbe-config", ":video_output:"),
    ]
    return platform_nodes("1f00128000.csi", "rp1-cfe", cfe) + platform_nodes(
        "1000880000.pisp_be", "pispbe", backend
    )


def ms2109_with_sound(first_video: int = 4, card: int = 1) -> list[Node]:
    """The MS2109 HDMI dongle with its stage sound: a UAC interface on the same USB device."""
    return ms2109(first_video) + usb_audio("1-5", 2, card, "MS2109", ["D0c"])


def c920_with_mic(port: str = "1-2", first_video: int = 0, card: int = 2) -> list[Node]:
    """The C920 and its stereo microphone (capture only, card id "C920")."""
    return c920(port=port, first_video=first_video) + usb_audio(port, 2, card, "C920", ["D0c"])


def lone_mic(port: str = "1-7", card: int = 3) -> list[Node]:
    """A "USB PnP Sound Device" (C-Media 0d8c:0014): a microphone and a headphone output, no
    video. Its card id is "Device", as the kernel names these."""
    usb = usb_device(
        port=port,
        vendor="0d8c",
        product="0014",
        attributes={
            "idVendor": "0d8c",
            "idProduct": "0014",
            "product": "USB PnP Sound Device",
            "speed": "12",
            "busnum": "1",
            "devnum": "8",
        },
    )
    return [usb, *usb_audio(port, 0, card, "Device", ["D0p", "D0c"])]


def hdmi_out(card: int = 0) -> list[Node]:
    """The board's HDMI output (vc4-hdmi on a Pi): a playback-only card, not an input."""
    parent = "/devices/platform/soc/fef00700.hdmi"
    platform = Node(parent, {"SUBSYSTEM": "platform", "DRIVER": "vc4_hdmi", "OF_NAME": "hdmi"})
    return [platform, *sound_card(parent, card, "vc4hdmi0", ["D0p"], "")]
