"""A destination's sender: `python -m edged.restream.sender PARENT_PID` publishes one session.

A process of its own because PyAV holds the GIL while FFmpeg connects (avformat_write_header:
DNS, TCP, TLS, the RTMP handshake and publish) and while it writes the trailer: in the daemon,
a hung platform would freeze every thread for the whole timeout. Here it only holds this
process. The spec (the key inside) and the packets come down stdin (edged.restream.wire),
never in argv or the environment; reports go up stdout as JSON lines. It dies with the daemon
(PR_SET_PDEATHSIG) and ends its session when stdin closes. Nothing it prints carries the URL:
failures are reported as a stage and an errno, never an exception's text (FFmpeg's carry the
key); stderr is not read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from typing import BinaryIO

PR_SET_PDEATHSIG = 1
BYTES_INTERVAL = 0.5  # seconds between reports of the bytes sent
NEEDED_FORMATS = ("tee", "flv")


def die_with_parent(parent: int) -> None:
    """SIGKILL when the thread that started this process ends (Linux), and exit at once when
    the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(0)


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next length-prefixed frame; None at the end of stdin (the daemon is done)."""
    from edged.restream.wire import LENGTH, MAX_FRAME

    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    if size > MAX_FRAME:
        return None
    body = stream.read(size)
    return body if len(body) == size else None


def missing_format(available: set[str] | frozenset[str]) -> str:
    """The first muxer this FFmpeg build lacks ("" when it has them all)."""
    return next((name for name in NEEDED_FORMATS if name not in available), "")


class Out:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def say(self, step: str, **facts: object) -> None:
        from edged.restream.wire import report

        self._stream.write(report(step, **facts))
        self._stream.flush()


def errno_of(error: BaseException) -> int | None:
    code = getattr(error, "errno", None)
    return code if isinstance(code, int) else None


def publish(stdin: BinaryIO, out: Out) -> int:
    """One session: connect, then mux what comes down stdin until it ends (blocking)."""
    import av

    from edged.restream.session import FlvSession, Geometry
    from edged.restream.wire import Step, read_packet, read_spec

    body = read_frame(stdin)
    if body is None:
        return 0
    spec = read_spec(body)
    problem = missing_format(set(av.formats_available))
    if problem:
        out.say(Step.FAILED, stage="setup", problem=problem)
        return 1
    session = FlvSession(
        spec.target, Geometry(spec.width, spec.height, spec.fps), spec.audio_config
    )
    stage = "connect"
    try:
        session.open()
        out.say(Step.LIVE, audio=session.has_audio)
        stage = "send"
        sent, said = 0, time.monotonic()
        while (body := read_frame(stdin)) is not None:
            sent += session.write(read_packet(body))
            if sent and time.monotonic() - said >= BYTES_INTERVAL:
                out.say(Step.BYTES, size=sent)
                sent, said = 0, time.monotonic()
        if sent:
            out.say(Step.BYTES, size=sent)
    except (av.FFmpegError, OSError) as error:
        out.say(Step.FAILED, stage=stage, code=errno_of(error))
        return 1
    except ValueError:  # PyAV: a muxer or stream it cannot make
        out.say(Step.FAILED, stage="setup", problem="muxer")
        return 1
    finally:
        session.close()
    return 0


def main() -> int:
    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the daemon's; it ends us
    return publish(sys.stdin.buffer, Out(sys.stdout.buffer))


if __name__ == "__main__":
    sys.exit(main())
