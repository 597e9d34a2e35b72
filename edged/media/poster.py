"""Posters: a picture as JPEG, from a decoded frame or a live keyframe (blocking: use a thread)."""

from __future__ import annotations

from typing import Any

import av

from edged.errors import MediaError

JPEG_QUALITY = 5  # MJPEG qscale, 2 (best) to 31: sharp enough for a tile, a few tens of kB


def frame_jpeg(frame: Any, quality: int = JPEG_QUALITY) -> bytes:
    """Encode one decoded video frame as a JPEG."""
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuvj420p"
    encoder.time_base = frame.time_base or 1  # type: ignore[assignment]
    encoder.qmin = encoder.qmax = quality
    encoder.open()
    packets = encoder.encode(frame.reformat(format="yuvj420p"))
    return b"".join(bytes(packet) for packet in packets)


def keyframe_jpeg(keyframe: bytes, quality: int = JPEG_QUALITY) -> bytes:
    """Decode one keyframe (SPS/PPS in front) and encode it as a JPEG."""
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    except av.FFmpegError as error:
        raise MediaError(f"keyframe does not decode: {error}") from error
    if not frames:
        raise MediaError("keyframe gave no picture")
    return frame_jpeg(frames[0], quality)
