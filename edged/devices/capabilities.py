"""V4L2 capabilities of a node (pixel formats, frame sizes, rates) through linuxpy.

The one place that opens a video node before streaming; a node that cannot be opened is still
listed, with the reason and what to do.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from linuxpy.video.device import Device


@dataclass(frozen=True)
class Mode:
    pixel_format: str
    width: int
    height: int
    max_fps: float


@dataclass(frozen=True)
class Capabilities:
    driver: str
    card: str
    modes: tuple[Mode, ...]


def _open_problem(node: str, error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot open {node}: permission denied; add the edged user to the video group"
    if error.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return f"cannot open {node}: the device is gone (unplugged?)"
    if error.errno == errno.EBUSY:
        return f"cannot open {node}: busy, another program uses it"
    return f"cannot open {node}: {error.strerror or error}"


def probe(node: str) -> tuple[Capabilities | None, str]:
    """(capabilities, "") or (None, why not); blocking: call it in a thread."""
    try:
        with Device(node) as device:
            info = device.info
            modes = tuple(
                sorted(
                    {
                        Mode(
                            pixel_format=getattr(
                                frame.pixel_format, "name", str(frame.pixel_format)
                            ),
                            width=int(frame.width),
                            height=int(frame.height),
                            max_fps=float(frame.max_fps),
                        )
                        for frame in info.frame_types
                    },
                    key=lambda mode: (mode.pixel_format, -mode.width * mode.height, -mode.max_fps),
                )
            )
            return Capabilities(driver=str(info.driver), card=str(info.card), modes=modes), ""
    except OSError as error:
        return None, _open_problem(node, error)
