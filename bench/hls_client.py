"""A light HLS player crowd, one process's share of it: raw HTTP/1.1 keep-alive on
asyncio.BufferedProtocol, so the clients measure the server and not themselves.

Each player holds one keep-alive connection. A response is received into one buffer the process
reuses for every socket; only the status line and the headers are parsed (Content-Length, and
Connection: close); a segment's body is counted, never copied; the playlist's (a few hundred
bytes) is kept and parsed. The players follow the live playlist exactly as bench/hls_crowd.py's
do (RFC 8216, as hls.js does: join three target durations back, fetch each new segment once, in
order, reload a target duration after the last load began, half of one if it did not change) and
keep its definitions: a segment's arrival is its last byte read off the socket, a stall is a
segment not there when its predecessor's playback ends, the margin how long before it was.

bench/edge_crowd.py starts several of these processes (--processes) for one crowd: the players'
start delays are drawn from one seed and dealt round robin, so a crowd is the same whatever the
number of processes. Each process prints one JSON object on stdout: its tally, how late its own
event loop woke (every 50 ms, the worst and the spread), its CPU and its involuntary context
switches (the kernel taking the core away) over the run.

Usage (by bench/edge_crowd.py): python bench/hls_client.py --url http://127.0.0.1:PORT/live/NAME
    --players N --seconds S --seed K --index I --processes P --start-at MONOTONIC
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hls_crowd import (
    REQUEST_TIMEOUT,
    START_SPREAD,
    Playlist,
    Tally,
    Timeline,
    live_start,
    parse_playlist,
)

BUFFER = 256 * 1024  # one receive buffer for every socket of the process
HEAD_LIMIT = 16 * 1024
TICK = 0.05  # the loop-lateness probe's period


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client reads (no Content-Length, junk)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # kept only when asked (the playlist)
    size: int  # body bytes received
    done: float  # monotonic time of the last byte


@dataclass(frozen=True)
class Head:
    status: int
    length: int
    close: bool


def parse_head(head: bytes) -> Head:
    """The status, Content-Length and Connection: close of a response head (without its blank
    line)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"status line {lines[0][:40]!r}")
    length, close = -1, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value == b"close"
        elif name == b"transfer-encoding":
            raise ProtocolError(f"transfer-encoding {value!r} (only Content-Length is read)")
    if length < 0:
        raise ProtocolError("no Content-Length")
    return Head(int(parts[1]), length, close)


class Connection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection, one GET at a time."""

    def __init__(self, buffer: bytearray) -> None:
        self._raw, self._view = buffer, memoryview(buffer)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._head = bytearray()
        self._response: Head | None = None
        self._body = bytearray()
        self._keep = False
        self._size = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._waiter is None or self._waiter.done():
                raise ProtocolError("bytes with no request")
            start = 0 if self._response is not None else self._end_of_head(nbytes)
            if start >= 0:
                self._take_body(self._view[start:nbytes])
        except (ProtocolError, ValueError) as error:
            self._fail(ProtocolError(str(error)))

    def _end_of_head(self, nbytes: int) -> int:
        """Where the body starts in the buffer once the head is whole (parsed then); -1 before.
        A head that came whole is found in place: the body is never copied."""
        if not self._head:
            end = self._raw.find(b"\r\n\r\n", 0, nbytes)
            if end >= 0:
                self._response = parse_head(bytes(self._raw[:end]))
                return end + 4
        before = len(self._head)
        self._head += self._view[:nbytes]
        end = self._head.find(b"\r\n\r\n", max(0, before - 3))
        if end < 0:
            if len(self._head) > HEAD_LIMIT:
                raise ProtocolError("response head too long")
            return -1
        self._response = parse_head(bytes(self._head[:end]))
        return end + 4 - before

    def _take_body(self, data: memoryview) -> None:
        assert self._response is not None
        assert self._waiter is not None
        wanted = self._response.length - self._size
        if len(data) > wanted:
            raise ProtocolError("more bytes than Content-Length")
        if self._keep:
            self._body += data
        self._size += len(data)
        if self._size < self._response.length:
            return
        answer = Answer(self._response.status, bytes(self._body), self._size, time.monotonic())
        if self._response.close and self._transport is not None:
            self._transport.close()
        self._waiter.set_result(answer)

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed"))

    async def get(self, request: bytes, keep: bool) -> Answer:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head.clear()
        self._body.clear()
        self._response, self._keep, self._size = None, keep, 0
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Client:
    """One player's HTTP: a keep-alive connection to one server, opened again when closed."""

    def __init__(self, host: str, port: int, buffer: bytearray) -> None:
        self._host, self._port, self._buffer = host, port, buffer
        self._connection: Connection | None = None

    async def get(self, path: str, keep: bool = False) -> Answer:
        if self._connection is None or self._connection.closed:
            loop = asyncio.get_running_loop()
            _, self._connection = await loop.create_connection(
                lambda: Connection(self._buffer), self._host, self._port
            )
        request = f"GET {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n\r\n".encode()
        return await self._connection.get(request, keep)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def fetch(
    client: Client, path: str, kind: str, tally: Tally, keep: bool = False
) -> tuple[Answer, float] | None:
    """The answer and the seconds to its last byte, or None with the error counted."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            answer = await client.get(path, keep)
    except (OSError, ProtocolError, TimeoutError) as error:
        client.close()  # the connection's state is unknown
        tally.errors[f"{kind} {type(error).__name__}"] += 1
        return None
    if answer.status != 200:
        tally.errors[f"{kind} HTTP {answer.status}"] += 1
        return None
    return answer, answer.done - started


@dataclass
class ClientTally(Tally):
    """hls_crowd's tally and the age of each playlist the players got."""

    playlist_ages: list[float] = field(default_factory=list)
    target_durations: dict[str, int] = field(default_factory=dict)  # EXT-X-TARGETDURATION: loads


def playlist_age(text: str, now: float) -> float | None:
    """Seconds from the end of the newest segment listed (its PROGRAM-DATE-TIME, the wall clock
    of its first frame, plus its EXTINF) to `now` (wall clock): how stale the playlist is, the
    box's muxing and any cache included. None without the tags."""
    start = text.rfind("#EXT-X-PROGRAM-DATE-TIME:")
    extinf = text.find("#EXTINF:", start)
    if start < 0 or extinf < 0:
        return None
    stamp = text[start:].split(":", 1)[1].split("\n", 1)[0].strip().replace("Z", "+00:00")
    duration = float(text[extinf:].split(":", 1)[1].split(",", 1)[0])
    return now - datetime.fromisoformat(stamp).timestamp() - duration


async def load_playlist(client: Client, base: str, tally: ClientTally) -> Playlist | None:
    got = await fetch(client, base + "/index.m3u8", "playlist", tally, keep=True)
    if got is None:
        return None
    answer, seconds = got
    tally.playlist_times.append(seconds)
    text = answer.body.decode()
    age = playlist_age(text, time.time() - (time.monotonic() - answer.done))
    if age is not None:
        tally.playlist_ages.append(age)
    playlist = parse_playlist(text)
    target = f"{playlist.target_duration:g}"
    tally.target_durations[target] = tally.target_durations.get(target, 0) + 1
    return playlist if playlist.segments else None


async def fetch_new(
    client: Client,
    base: str,
    playlist: Playlist,
    following: int,
    timeline: Timeline,
    tally: ClientTally,
) -> int:
    """Fetch, in order, the segments from sequence `following` on; the next one to follow."""
    for segment in playlist.segments:
        if segment.sequence < following:
            continue
        tally.skipped += segment.sequence - following
        following = segment.sequence + 1
        got = await fetch(client, f"{base}/{segment.uri}", "segment", tally)
        if got is None:
            continue
        tally.served += 1
        tally.segment_times.append(got[1])
        margin = timeline.arrived(got[0].done, segment.duration)
        if margin is not None:
            tally.margins.append(margin)
    return following


async def play(client: Client, base: str, delay: float, seconds: float, tally: ClientTally) -> None:
    """One player: join after `delay`, follow the live playlist for `seconds` (hls_crowd.play)."""
    await asyncio.sleep(delay)
    loaded_at = time.monotonic()
    until = loaded_at + seconds
    playlist = await load_playlist(client, base, tally)
    if playlist is None or await fetch(client, f"{base}/{playlist.init}", "init", tally) is None:
        return
    timeline = Timeline()
    following = live_start(playlist, "rfc")
    while True:
        before = following
        following = await fetch_new(client, base, playlist, following, timeline, tally)
        wait = playlist.target_duration * (1.0 if following != before else 0.5)
        if loaded_at + wait >= until:
            break
        await asyncio.sleep(max(0.0, loaded_at + wait - time.monotonic()))
        loaded_at = time.monotonic()
        playlist = await load_playlist(client, base, tally) or playlist
    tally.stalls += timeline.stalls


async def lateness(stop: asyncio.Event, into: list[float]) -> None:
    """How late each of this loop's wake-ups every TICK was, until `stop`."""
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(TICK)
        into.append(time.monotonic() - asked - TICK)


def my_delays(players: int, seed: int, index: int, processes: int) -> list[float]:
    """This process's share of the crowd's start delays (one draw for the crowd, dealt round
    robin)."""
    rng = random.Random(seed)
    delays = sorted(rng.uniform(0, START_SPREAD) for _ in range(players))
    return delays[index::processes]


async def crowd(args: argparse.Namespace) -> dict[str, object]:
    """This process's players, started at --start-at; its tally and its own figures."""
    split = urlsplit(args.url)
    assert split.hostname is not None
    assert split.port is not None
    buffer = bytearray(BUFFER)
    delays = my_delays(args.players, args.seed, args.index, args.processes)
    clients = [Client(split.hostname, split.port, buffer) for _ in delays]
    slack = args.start_at - time.monotonic()
    await asyncio.sleep(max(0.0, slack))
    tally, stop = ClientTally(), asyncio.Event()
    late: list[float] = []
    probe = asyncio.create_task(lateness(stop, late))
    cpu, usage, started = (
        time.process_time(),
        resource.getrusage(resource.RUSAGE_SELF),
        time.monotonic(),
    )
    await asyncio.gather(
        *(play(c, split.path, d, args.seconds, tally) for c, d in zip(clients, delays, strict=True))
    )
    elapsed = time.monotonic() - started
    stop.set()
    await probe
    for client in clients:
        client.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    figures = asdict(tally)
    figures.update(
        players=len(delays),
        elapsed=elapsed,
        cpu=(time.process_time() - cpu) / elapsed,
        involuntary_switches=after.ru_nivcsw - usage.ru_nivcsw,
        start_slack=slack,
        lateness=late,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="http://host:port/live/<stream>")
    parser.add_argument("--players", type=int, required=True, help="the whole crowd's")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True, help="time.monotonic()")
    args = parser.parse_args()
    figures = asyncio.run(crowd(args))
    json.dump(figures, sys.stdout)


if __name__ == "__main__":
    main()
