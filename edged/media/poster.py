"""The poster of a live stream: its latest keyframe as a JPEG (blocking: call it in a thread)."""

from __future__ import annotations

import av

from edged.errors import MediaError


def keyframe_jpeg(keyframe: bytes, quality: int = 5) -> bytes:
    """Decode one keyframe (SPS/PPS in front) and encode it as a JPEG."""
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    except av.FFmpegError as error:
        raise MediaError(f"keyframe does not decode: {error}") from error
    if not frames:
        raise MediaError("keyframe gave no picture")
    frame = frames[0]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuvj420p"
    encoder.time_base = frame.time_base or 1  # type: ignore[assignment]
    encoder.qmin = encoder.qmax = quality
    encoder.open()
    packets = encoder.encode(frame.reformat(format="yuvj420p"))
    return b"".join(bytes(packet) for packet in packets)
