"""Test clips: lavfi's testsrc2 encoded with PyAV, with a real GOP, and a tone if asked."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av

# The clips made so far, by what they were made of: each is encoded once a process (the same
# arguments give the same bytes) and copied to where it is asked for.
_made: dict[tuple[object, ...], Path] = {}
_made_lock = threading.Lock()
_made_dir: tempfile.TemporaryDirectory[str] | None = None


def make_clip(
    path: Path,
    seconds: float = 2.0,
    codec: str = "libx264",
    pix: str = "yuv420p",
    size: str = "320x240",
    fmt: str | None = None,
    *,
    codec_options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
    audio: bool = False,
) -> Path:
    """`seconds` of 30 fps video (a GOP per second unless `codec_options` say otherwise) and,
    with `audio`, a 440 Hz AAC tone as long; a fresh copy of the one made for these arguments."""
    global _made_dir
    key = (
        path.suffix,
        seconds,
        codec,
        pix,
        size,
        fmt,
        tuple(sorted((codec_options or {}).items())) if codec_options is not None else None,
        tuple(sorted((container_options or {}).items())),
        audio,
    )
    with _made_lock:
        made = _made.get(key)
        if made is None:
            if _made_dir is None:
                _made_dir = tempfile.TemporaryDirectory(prefix="edged-test-clips-")
                atexit.register(_made_dir.cleanup)
            made = Path(_made_dir.name) / f"{len(_made)}{path.suffix}"
            _encode(made, seconds, codec, pix, size, fmt, codec_options, container_options, audio)
            _made[key] = made
    shutil.copyfile(made, path)
    return path


def _encode(
    path: Path,
    seconds: float,
    codec: str,
    pix: str,
    size: str,
    fmt: str | None,
    codec_options: Mapping[str, str] | None,
    container_options: Mapping[str, str] | None,
    audio: bool,
) -> None:
    width, height = (int(v) for v in size.split("x"))
    with av.open(str(path), "w", format=fmt, options=dict(container_options or {})) as out:
        video: Any = out.add_stream(codec, rate=30)
        video.width, video.height, video.pix_fmt = width, height, pix
        video.options = dict(codec_options or {"g": "30"})
        sound: Any = out.add_stream("aac", rate=48000) if audio else None
        with av.open(f"testsrc2=size={size}:rate=30", format="lavfi") as source:
            for index, frame in enumerate(source.decode(video=0)):
                frame.pict_type = av.video.frame.PictureType.NONE  # lavfi's are all I: no GOP
                out.mux(video.encode(frame.reformat(format=pix)))
                if index + 1 >= seconds * 30:
                    break
        out.mux(video.encode(None))
        if sound is not None:
            with av.open("sine=frequency=440:sample_rate=48000", format="lavfi") as tone:
                for index, samples in enumerate(tone.decode(audio=0)):
                    samples.pts = None
                    out.mux(sound.encode(samples))
                    if index * 1024 >= seconds * 48000:
                        break
            out.mux(sound.encode(None))
