"""Restream decisions without I/O: masked URLs, the muxer's target, reasons for failures, which
packets a destination's queue takes, and timestamps rebased to a session's first keyframe.

Nothing here ever returns the stream key: every text meant for a log, a metric or an answer is
made from the masked URL or from an errno, never from an exception's text (FFmpeg's carry the
URL, key included).
"""

from __future__ import annotations

import enum
import errno
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

MASK = "****"
# A session that ran this long before failing starts the next retry again at the minimum.
STABLE_SECONDS = 60.0
# FFmpeg's AVERROR_EOF ('EOF ' as a tag), as PyAV's av.error.EOFError carries it in errno.
AVERROR_EOF = 0x20464F45


class RestreamState(enum.StrEnum):
    DISABLED = "disabled"  # switched off (config, API or CLI)
    WAITING = "waiting"  # for its stream to run and give a keyframe
    CONNECTING = "connecting"
    LIVE = "live"  # publishing: packets go out
    RETRYING = "retrying"  # the last attempt failed; the next after a backoff


@dataclass(frozen=True)
class Address:
    """The parts of an RTMP(S) URL: scheme, host, port, app (its first path segment)."""

    scheme: str
    host: str
    port: int
    app: str

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


def parse_address(url: str) -> Address:
    """The address of a URL config accepted (rtmp(s)://host[:port]/app...)."""
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    authority = authority.rpartition("@")[2]  # never a user:password
    port = DEFAULT_PORTS.get(scheme, 1935)
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif authority.count(":") == 1:
        host, _, number = authority.partition(":")
        port = int(number) if number.isdigit() else port
    else:
        host = authority
    app = path.split("?")[0].split("/")[0]
    return Address(scheme, host, port, app)


def mask_url(url: str) -> str:
    """The URL as logs, metrics and answers show it: scheme://host[:port]/app/****; the key,
    anything after the app, a query and a user:password are never shown."""
    address = parse_address(url)
    authority = url.partition("://")[2].partition("/")[0].rpartition("@")[2]
    app = f"/{address.app}" if address.app else ""
    return f"{address.scheme}://{authority}{app}/{MASK}"


def publish_url(url: str, key: str) -> str:
    """The URL FFmpeg publishes to: the configured one, the key as its last part."""
    return f"{url.rstrip('/')}/{key}" if key else url


def tee_escape(text: str) -> str:
    """`text` as one slave of FFmpeg's tee muxer reads it (av_get_token: backslash escapes)."""
    return "".join("\\" + char if char in "\\'|" else char for char in text)


def tee_target(
    url: str, timeout: float, interleave_microseconds: int, *, tls_verify: bool, ca_file: str
) -> str:
    """The tee muxer's one slave: FLV to `url`, each socket operation bounded by `timeout`.

    PyAV opens a muxer's output without options or an interrupt callback, so a dead server
    would hold the sending thread for ever; the tee muxer opens its slave with the slave's
    options, where FFmpeg's `rw_timeout` bounds the connection and every write. For rtmps the
    server's certificate is checked (FFmpeg does not by default: the key would go to anyone in
    the path) against `ca_file` (a path config allows: no character the options would parse)."""
    options = (
        f"f=flv:onfail=abort:rw_timeout={round(timeout * 1_000_000)}"
        f":max_interleave_delta={interleave_microseconds}"
    )
    if url.startswith("rtmps://") and tls_verify:
        options += ":tls_verify=1" + (f":ca_file={ca_file}" if ca_file else "")
    return f"[{options}]{tee_escape(url)}"


# What FFmpeg raises when a server that took the connection ends it before the publish went
# through (nginx-rtmp's on_publish refusing a key; an rtmps certificate not trusted).
REFUSALS = frozenset({errno.EIO, AVERROR_EOF, errno.ECONNRESET, errno.EPIPE})


class Stage(enum.Enum):
    SETUP = "setup"  # the sender could not make the muxer (this FFmpeg lacks it)
    RESOLVE = "resolve"  # looking the host up
    CONNECT = "connect"  # connecting and publishing
    SEND = "send"  # publishing went through; a write failed


@dataclass(frozen=True)
class Failure:
    """Where an attempt failed, its errno (FFmpeg's or the system's) and, at setup, what the
    FFmpeg build lacks."""

    stage: Stage
    code: int | None = None
    problem: str = ""


CRASH = re.compile(r"crash: ([A-Za-z_][A-Za-z0-9_.]{0,80})")


def setup_reason(problem: str, code: int | None = None) -> str:
    """Why a sender could not start a session: this FFmpeg build lacks a muxer, the process
    could not be started (`code`: its errno), it was sent a garbled frame, or it crashed."""
    if problem in ("tee", "flv"):
        return (
            f"cannot restream: this FFmpeg build lacks the {problem} muxer "
            "(install PyAV's own wheels)"
        )
    if problem == "start":
        return f"could not start the sender process: {_strerror(code)}"
    if problem == "wire":
        return "the sender process was sent a garbled frame (a bug in edged: please report it)"
    crash = CRASH.fullmatch(problem)
    if crash is not None:
        return f"the sender process crashed ({crash[1]}; a bug in edged: please report it)"
    return (
        "cannot restream: this FFmpeg build lacks a muxer restreaming needs "
        "(install PyAV's own wheels)"
    )


# FFmpeg's AVERROR_PROTOCOL_NOT_FOUND as PyAV's errno: rtmps in a build without TLS.
AVERROR_PROTOCOL_NOT_FOUND = 0x4F5250F8


def failure_reason(stage: Stage, code: int | None, address: Address, timeout: float) -> str:
    """A short reason for the status, from where it failed and the errno; never the key."""
    where = address.hostport
    if stage is Stage.RESOLVE:
        return f"cannot resolve host {address.host}: check the URL"
    if code == errno.ECONNREFUSED:
        return f"connection refused by {where}: no RTMP server listens there (check the URL)"
    if code == errno.ETIMEDOUT:
        return f"no answer from {where} within {timeout:g} s"
    if code == AVERROR_PROTOCOL_NOT_FOUND:
        return (
            f"cannot restream: this FFmpeg build cannot speak {address.scheme} "
            "(no TLS library for rtmps: install PyAV's own wheels)"
        )
    if stage is Stage.CONNECT:
        if code in REFUSALS:
            return (
                f"{where} refused to publish: check the application ({address.app or 'none'}) "
                "and the stream key"
            )
        return f"cannot publish to {where}: {_strerror(code)}"
    if code in (AVERROR_EOF, errno.ECONNRESET, errno.EPIPE, errno.EIO):
        return f"connection to {where} lost (closed by the server)"
    return f"connection to {where} lost: {_strerror(code)}"


# Failures where no TCP connection was made. Not ETIMEDOUT: a hung server (overloaded, stopped)
# still completes TCP handshakes into its listen backlog, so a TCP connection going through
# says nothing about its return; a timed-out attempt waits the whole backoff.
UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


def unreachable(stage: Stage, code: int | None) -> bool:
    """Whether a failure means the server could not be reached (not that it refused the
    publish, dropped a session or hung): its return can be watched for with a TCP
    connection."""
    return stage is Stage.RESOLVE or (stage is Stage.CONNECT and code in UNREACHABLE)


def public_stream(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stream's entry in /api/v1/streams for a caller without the token: its destinations
    (platforms, apps, last errors) only as counts of live and not live."""
    rows = entry.get("restream")
    if not isinstance(rows, list):
        return dict(entry)
    live = sum(1 for row in rows if row.get("state") == RestreamState.LIVE.value)
    return {**entry, "restream": {"live": live, "not_live": len(rows) - live}}


QUIET_SECONDS = 5.0  # a session whose feed gave nothing this long ends (not "live")


def session_over(stream: str, *, running: bool, quiet_seconds: float) -> str | None:
    """Why a publishing session ends though nothing failed (None: it goes on): its stream
    stopped, or gave nothing for QUIET_SECONDS. A platform would end an idle broadcast by
    itself; edged says so (not "live", so the alert fires) and starts again at a keyframe."""
    if not running:
        return f"stream {stream} is not running"
    if quiet_seconds >= QUIET_SECONDS:
        return f"stream {stream} gave nothing for {QUIET_SECONDS:g} s"
    return None


def certificate_reason(address: Address, problem: str) -> str:
    """Why an rtmps server was not published to: its certificate is not trusted."""
    return (
        f"the TLS certificate of {address.hostport} is not trusted ({problem}): check the URL, "
        "or set ca_file (tls_verify = false only for a server of your own)"
    )


def _strerror(code: int | None) -> str:
    """An errno's text (never an exception's, which carries the URL)."""
    if code is None:
        return "unknown error"
    return os.strerror(code).lower() if code in errno.errorcode else f"FFmpeg error {code}"


class Admission(enum.Enum):
    TAKE = "take"  # queue it
    DROP = "drop"  # drop it (waiting for a keyframe)
    RESTART = "restart"  # drop everything queued, queue it (a keyframe: a fresh start)
    FLUSH = "flush"  # drop everything queued and it; wait for the next keyframe


def admit(*, keyframe: bool, waiting: bool, queued: int, limit: int, live: bool) -> Admission:
    """What a destination's queue does with a video frame.

    While not publishing it keeps the newest GOP only (a reconnect starts from the latest
    keyframe, not from stale pictures); while publishing it takes every frame until `limit`
    are queued (a slow platform), then drops them all and resumes at the next keyframe."""
    if keyframe:
        return Admission.TAKE if live and queued < limit else Admission.RESTART
    if waiting:
        return Admission.DROP
    if queued >= limit:
        return Admission.FLUSH
    return Admission.TAKE


def rebased(timestamp: int, time_base: Fraction, origin_seconds: Fraction) -> int | None:
    """A timestamp on a session's clock (0 at its first keyframe), in `time_base`; None for a
    time before it (sound captured before the session's first picture)."""
    shifted = timestamp - round(origin_seconds / time_base)
    return shifted if shifted >= 0 else None


def continued_origin(keyframe_seconds: Fraction, session_end: Fraction) -> Fraction:
    """The origin that puts a restarted stream's first keyframe (`keyframe_seconds` on its new
    clock) where the session's pictures ended: the platform sees one continuous stream."""
    return keyframe_seconds - session_end
