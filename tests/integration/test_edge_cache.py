"""The cache in front for crowds (#19): the shipped configs/nginx/edged-edge.conf run by Debian's
nginx on loopback in front of a real daemon. A segment fetched twice reaches the box once (its
own byte count says so, not only nginx's log); an exclusive clip is never answered from the cache
to a phone without the member cookie, nor a member's copy kept; the playlist is refreshed
every second."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edged.guest.members import COOKIE
from tests.clips import make_clip
from tests.edge_cache import EdgeCache, running_edge
from tests.support import DaemonProcess, shared_daemon, still_running, until

pytestmark = pytest.mark.integration

STREAM = "/live/test-pattern"


@pytest.fixture(scope="module")
def box_and_edge(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DaemonProcess, EdgeCache]]:
    directory = tmp_path_factory.mktemp("edge")
    with (
        shared_daemon(directory, {"mdns": {"enabled": False}}, "test-pattern") as daemon,
        running_edge(directory / "nginx", f"127.0.0.1:{daemon.port}") as edge,
    ):
        yield daemon, edge


@pytest.fixture
def box(box_and_edge: tuple[DaemonProcess, EdgeCache]) -> Iterator[DaemonProcess]:
    yield from still_running(box_and_edge[0])


@pytest.fixture
def edge(box: DaemonProcess, box_and_edge: tuple[DaemonProcess, EdgeCache]) -> EdgeCache:
    return box_and_edge[1]


def request(
    url: str, method: str = "GET", data: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def hls_bytes_sent(box: DaemonProcess) -> float:
    """edged_live_bytes_total of the stream's HLS: what the box itself sent in segments."""
    _, _, body = request(box.url + "/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "edged_live_bytes_total" and sample.labels == {
                "stream": "test-pattern",
                "protocol": "hls",
            }:
                return sample.value
    return 0.0


def listed_segments(playlist: bytes) -> list[str]:
    return re.findall(r"^(segment-[0-9a-f]{8}-\d+\.m4s)$", playlist.decode(), re.M)


def listed_init(playlist: bytes) -> str:
    (init,) = re.findall(r'^#EXT-X-MAP:URI="(init-[0-9a-f]{8}\.mp4)"$', playlist.decode(), re.M)
    return init


def test_a_segment_fetched_twice_reaches_the_box_once(box: DaemonProcess, edge: EdgeCache) -> None:
    status, headers, playlist = request(edge.url + STREAM + "/index.m3u8")
    assert status == 200 and headers["cache-control"] == "public, max-age=1"
    newest = listed_segments(playlist)[-1]
    before = hls_bytes_sent(box)
    first = request(f"{edge.url}{STREAM}/{newest}")
    second = request(f"{edge.url}{STREAM}/{newest}")
    assert first[0] == second[0] == 200 and first[2] == second[2]
    assert first[1]["cache-control"] == "public, max-age=86400, immutable"
    assert (first[1]["x-cache-status"], second[1]["x-cache-status"]) == ("MISS", "HIT")
    assert hls_bytes_sent(box) - before == len(first[2])  # one copy left the box
    assert edge.to_box()[f"{STREAM}/{newest}"] == 1

    name = listed_init(playlist)
    init = [request(f"{edge.url}{STREAM}/{name}") for _ in range(2)]
    assert [answer[0] for answer in init] == [200, 200] and init[0][2] == init[1][2]
    assert init[0][1]["cache-control"] == "public, max-age=86400, immutable"
    assert edge.to_box()[f"{STREAM}/{name}"] == 1


def test_the_playlist_is_refreshed(box: DaemonProcess, edge: EdgeCache) -> None:
    _, _, first = request(edge.url + STREAM + "/index.m3u8")
    newest = listed_segments(first)[-1]

    def newer() -> bool:
        _, _, again = request(edge.url + STREAM + "/index.m3u8")
        return listed_segments(again)[-1] != newest

    until(newer, 20, "a playlist through the cache listing a newer segment")


def test_the_playlist_is_kept_for_the_second_it_was_fetched_in(
    box: DaemonProcess, edge: EdgeCache
) -> None:
    """bench/edge_crowd.py at 1,000 players: with max-age=1 alone nginx kept the playlist up to
    2 s (it counts whole seconds), players learned of segments up to 3.9 s late and stalled.
    Within a second the copy is answered from the cache; the next second's first request
    fetches it from the box again."""
    url = edge.url + STREAM + "/index.m3u8"
    until(lambda: time.time() % 1 < 0.5, 2, "the first half of a second")
    second = int(time.time())
    statuses = [request(url)[1]["x-cache-status"] for _ in range(2)]
    if int(time.time()) == second:  # both inside one second (a few ms on loopback)
        assert statuses[1] == "HIT"
    until(lambda: int(time.time()) > second, 2, "the next second")
    assert request(url)[1]["x-cache-status"] == "MISS"


def add_exclusive_clip(box: DaemonProcess, tmp_path: Path) -> str:
    """A clip put on the box through the API and made exclusive; the crew's token."""
    assert box.data_dir is not None
    token = (box.data_dir / "admin.token").read_text().strip()
    crew = {"Authorization": f"Bearer {token}"}
    clip = make_clip(tmp_path / "finale.mp4", seconds=1).read_bytes()
    put = f"{box.url}/api/v1/assets/finale.mp4"
    assert request(put, "PUT", clip, **crew)[0] == 201
    patched = request(
        put, "PATCH", b'{"exclusive": true}', **crew, **{"Content-Type": "application/json"}
    )
    assert patched[0] == 200, patched[2]
    return token


def member_cookie(box: DaemonProcess, email: str = "ada@example.org") -> str:
    """Signed up on the box itself: the member cookie's value."""
    _, _, form = request(box.url + "/join")
    fields = dict(re.findall(r'type=hidden name=(\w+) value="([^"]*)"', form.decode()))
    fields |= {"email": email, "consent": "yes"}
    body = urllib.parse.urlencode(fields).encode()
    status, headers, _ = request(
        box.url + "/join",
        "POST",
        body,
        Origin=box.url,
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    match = re.search(rf"{COOKIE}=([^;]+)", headers["set-cookie"])
    assert match is not None
    return match.group(1)


def test_an_exclusive_clip_is_never_answered_from_the_cache(
    box: DaemonProcess, edge: EdgeCache, tmp_path: Path
) -> None:
    add_exclusive_clip(box, tmp_path)
    clip = edge.url + "/assets/finale.mp4"
    cookie = f"{COOKIE}={member_cookie(box)}"
    member = [request(clip, Cookie=cookie) for _ in range(2)]
    assert [answer[0] for answer in member] == [200, 200]
    assert member[0][1]["cache-control"] == "private, no-cache"
    assert member[0][1]["vary"] == "Cookie"
    for answer in (request(clip), request(clip, Range="bytes=0-99"), request(clip, "HEAD")):
        assert answer[0] == 403, answer[1]
        assert answer[1]["x-cache-status"] != "HIT"
    # nginx logs a request once it is done with it, which can be after its client has the body.
    until(lambda: len(edge.requests_for("/assets/finale.mp4")) >= 5, what="the edge's log")
    to_box = edge.requests_for("/assets/finale.mp4")
    assert len(to_box) == 5 and all(entry.upstream for entry in to_box)
    assert not [entry for entry in to_box if entry.cache == "HIT"]


def test_a_plain_clip_is_kept_and_ranges_come_from_the_cache(
    box: DaemonProcess, edge: EdgeCache, tmp_path: Path
) -> None:
    assert box.data_dir is not None
    token = (box.data_dir / "admin.token").read_text().strip()
    clip = make_clip(tmp_path / "teaser.mp4", seconds=1).read_bytes()
    put = f"{box.url}/api/v1/assets/teaser.mp4"
    assert request(put, "PUT", clip, Authorization=f"Bearer {token}")[0] == 201
    url = edge.url + "/assets/teaser.mp4"
    clip = request(box.url + "/assets/teaser.mp4")[2]  # as the box prepared it (fast start)
    whole = request(url)
    assert (
        whole[0] == 200 and whole[2] == clip and whole[1]["cache-control"] == "public, max-age=300"
    )
    part = request(url, Range="bytes=10-99")
    assert part[0] == 206 and part[2] == clip[10:100] and part[1]["x-cache-status"] == "HIT"
    assert edge.to_box()["/assets/teaser.mp4"] == 1


def test_a_signup_through_the_edge_on_its_own_port_is_same_origin(
    box: DaemonProcess, edge: EdgeCache
) -> None:
    """The edge passes the Host the phone sent, port and all (review of #19, finding 11): a
    browser that sends only Origin (no Sec-Fetch-Site) is not refused as cross-site."""
    _, _, form = request(edge.url + "/join")
    fields = dict(re.findall(r'type=hidden name=(\w+) value="([^"]*)"', form.decode()))
    fields |= {"email": "edge-guest@example.org", "consent": "yes"}
    status, _, answer = request(
        edge.url + "/join",
        "POST",
        urllib.parse.urlencode(fields).encode(),
        Origin=edge.url,
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, answer


def test_a_box_that_is_down_is_asked_once_a_second_not_by_every_phone(tmp_path: Path) -> None:
    """Review s7b, N1: with the playlist keyed by the second no stale copy is left to serve
    while the box restarts, so every phone's request went on to it. Its errors are kept for the
    second too."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        box = f"127.0.0.1:{closed.getsockname()[1]}"  # nothing listens: the box is down
    uri = STREAM + "/index.m3u8"
    with running_edge(tmp_path / "nginx", box) as edge:
        for _ in range(3):  # five requests in one second (a few ms on loopback), else again
            until(lambda: time.time() % 1 < 0.5, 2, "the first half of a second")
            second, logged = int(time.time()), len(edge.requests_for(uri))
            answers = [request(edge.url + uri) for _ in range(5)]
            assert [status for status, _, _ in answers] == [502] * 5
            if int(time.time()) == second:
                break
        else:
            raise AssertionError("five requests never fitted in one second")
        # nginx logs a request once it is done with it, which can be after its client has it.
        until(lambda: len(edge.requests_for(uri)) >= logged + 5, what="the edge's log")
        assert [entry.upstream for entry in edge.requests_for(uri)[logged:]].count(True) == 1
        assert [h["x-cache-status"] for _, h, _ in answers[1:]] == ["HIT"] * 4
