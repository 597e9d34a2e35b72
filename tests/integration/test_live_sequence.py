"""A live stream that restarts in a real daemon (its camera's source ends, or the camera is
replugged: a new pipeline, a new HLS run with an init of its own) goes on numbering its
segments (review 19, finding 7): a player reloading the playlist never sees
#EXT-X-MEDIA-SEQUENCE go back (RFC 8216 6.2.1), the new run's first segment is marked
#EXT-X-DISCONTINUITY before the new #EXT-X-MAP, and the new segments decode with the new
init."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import pytest

from tests.conftest import StartDaemon
from tests.integration.test_daemon import http
from tests.support import until

pytestmark = pytest.mark.integration

STREAM = "elgato-cam-link-4k-0004e1a2b3c4"
PATH = f"/live/{STREAM}/"


def settings(run_seconds: int) -> dict[str, dict[str, object]]:
    """A camera whose source ends after `run_seconds`, again and again (restarts after 1 s,
    2 s, 4 s ...)."""
    stand_in = f"testsrc2=size=320x240:rate=15:duration={run_seconds},realtime"
    return {
        "mdns": {"enabled": False},
        "media": {"v4l2_stand_in": stand_in, "gop_seconds": 0.5},
    }


@dataclass(frozen=True)
class Listed:
    """What one playlist lists."""

    media_sequence: int
    discontinuity_sequence: int
    init: str  # the newest run's (the last #EXT-X-MAP): the runs before's may still be listed
    segments: tuple[tuple[str, bool], ...]  # (name, marked #EXT-X-DISCONTINUITY)
    text: str

    def own(self) -> tuple[tuple[str, bool], ...]:
        """The newest run's segments."""
        run = self.init.removeprefix("init-").removesuffix(".mp4")
        return tuple(item for item in self.segments if item[0].startswith(f"segment-{run}-"))


def parse(text: str) -> Listed:
    init = re.findall(r'^#EXT-X-MAP:URI="([^"]+)"$', text, re.M)[-1]
    media = re.search(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", text, re.M)
    discontinuity = re.search(r"^#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)$", text, re.M)
    segments, marked = [], False
    for line in text.splitlines():
        if line == "#EXT-X-DISCONTINUITY":
            marked = True
        elif line.startswith("segment-"):
            segments.append((line, marked))
            marked = False
    assert media is not None, text
    return Listed(
        int(media.group(1)),
        int(discontinuity.group(1)) if discontinuity else 0,
        init,
        tuple(segments),
        text,
    )


def decoded_frames(init: bytes, segment: bytes) -> int:
    container: Any
    with av.open(io.BytesIO(init + segment)) as container:
        return sum(1 for _ in container.decode(video=0))


class Player:
    """Reloads the playlist as a player does, keeping each distinct one (blocking)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[Listed] = []

    def reload(self) -> Listed | None:
        status, body = http(self.url + PATH + "index.m3u8")
        if status != 200:
            return None  # no segment yet (a run starting)
        listed = parse(body.decode())
        if not self.seen or self.seen[-1].text != listed.text:
            self.seen.append(listed)
        return listed

    def wait(self, condition: Callable[[Listed], bool], what: str) -> Listed:
        """The first playlist that meets `condition`, reloading until a deadline."""

        def probe() -> Listed | None:
            listed = self.reload()
            return listed if listed is not None and condition(listed) else None

        return until(probe, 30, what)

    def get(self, name: str) -> bytes:
        status, body = http(self.url + PATH + name)
        assert status == 200, name
        return body


def numbering(listed: Listed) -> dict[str, tuple[int, int]]:
    """Each listed segment's (media sequence number, discontinuity sequence number), as a player
    counts them (RFC 8216 6.3.2: the playlist's numbers plus the segments and marks before)."""
    numbers, discontinuity = {}, listed.discontinuity_sequence
    for index, (name, marked) in enumerate(listed.segments):
        discontinuity += marked
        numbers[name] = (listed.media_sequence + index, discontinuity)
    return numbers


@pytest.mark.timeout(90)
def test_a_restarted_stream_numbers_on_and_marks_the_discontinuity(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon(
        settings(3),
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )
    daemon.send("plug 1-4 0 6")
    daemon.wait_for(re.compile(rf"stream {STREAM}: starting -> up"))
    player = Player(daemon.url)
    before = player.wait(lambda listed: len(listed.segments) >= 2, "two segments of a run")
    after = player.wait(lambda listed: listed.init != before.init, "the restarted run's playlist")
    # A player following the restart: the new init and the new run's first segment (the old
    # run's may still be listed before it, under the old init: review s7a H1).
    first_name, first_marked = after.own()[0]
    init, first = player.get(after.init), player.get(first_name)

    last_before = max(
        listed.media_sequence + len(listed.segments) - 1
        for listed in player.seen
        if listed.init == before.init
    )
    assert numbering(after)[first_name][0] > last_before, after.text
    assert after.media_sequence >= before.media_sequence, after.text
    # The restarted run's first segment is marked, its new init declared after the mark.
    assert first_marked, after.text
    new_map = after.text.index(f'#EXT-X-MAP:URI="{after.init}"')
    assert after.text.rindex("#EXT-X-DISCONTINUITY\n", 0, new_map) < new_map
    assert after.text.index(first_name) > new_map
    assert not any(marked for _, marked in after.own()[1:]), after.text
    assert decoded_frames(init, first) > 0
    for name, _ in after.own()[1:]:
        status, segment = http(daemon.url + PATH + name)
        if status == 200:  # one gone from the window since: a player skips it
            assert decoded_frames(init, segment) > 0, name

    # One more restart: the marked segment leaves the window, and the discontinuity sequence
    # counts it.
    player.wait(
        lambda listed: (
            listed.init not in (before.init, after.init)
            and listed.discontinuity_sequence > after.discontinuity_sequence
        ),
        "the next run's, its mark gone",
    )

    # The camera replugged: its stream goes (the playlist answers 404), then comes back under
    # the same name and numbers on.
    daemon.send("unplug")
    daemon.wait_for(re.compile(rf"stream {STREAM} down: \S+ unplugged"))
    until(lambda: http(daemon.url + PATH + "index.m3u8")[0] == 404, 20, "the stream gone")
    unplugged = player.seen[-1]
    daemon.send("plug 1-5 2 7")  # another port (umockdev makes each device node once)
    replugged = player.wait(lambda listed: listed.init != unplugged.init, "the replugged run's")
    assert replugged.media_sequence > unplugged.media_sequence + len(unplugged.segments) - 1
    # Gone a while: only the numbers were kept (review s7a H2), no old segment is listed.
    assert replugged.segments[0][1] and replugged.segments == replugged.own(), replugged.text

    # Every reload the player made: neither sequence went back, each segment kept its media and
    # discontinuity sequence numbers from one playlist to the next, and one media sequence
    # number named one segment (review s7a H6).
    for earlier, later in zip(player.seen, player.seen[1:], strict=False):
        assert later.media_sequence >= earlier.media_sequence, (earlier.text, later.text)
        assert later.discontinuity_sequence >= earlier.discontinuity_sequence, later.text
    numbers: dict[str, tuple[int, int]] = {}
    names: dict[int, str] = {}
    for listed in player.seen:
        for name, counted in numbering(listed).items():
            assert numbers.setdefault(name, counted) == counted, (name, listed.text)
            assert names.setdefault(counted[0], name) == name, (counted, listed.text)
    assert daemon.stop() == 0


# Each run of the stream below plays 4 s of pictures: a player past two runs' worth has played
# across at least two restarts.
RUN_SECONDS = 4


@pytest.mark.timeout(120)
def test_chromium_plays_the_live_page_on_across_restarts(start_daemon: StartDaemon) -> None:
    """The live page over HLS (Chromium's own player) plays on across the stream's restarts:
    before the numbering went on, it stalled at each restart and started over from 0."""
    daemon = start_daemon(
        settings(RUN_SECONDS),
        wrapper=("umockdev-wrapper",),
        command=(sys.executable, "-m", "tests.devices.daemon_with_testbed"),
    )
    daemon.send("plug 1-4 0 6")
    until(lambda: http(daemon.url + PATH + "index.m3u8")[0] == 200, 30, "the first segment")
    played = subprocess.run(
        [
            *(sys.executable, "-m", "tests.browser.restart_in_chromium"),
            *(f"{daemon.url}/live/{STREAM}?via=hls", str(2 * RUN_SECONDS + 1)),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert played.returncode == 0, played.stderr[-3000:]
    outcome = json.loads(played.stdout.strip().splitlines()[-1])
    assert outcome["went_back"] == 0 and not outcome["error"], outcome
    assert outcome["reached"] >= 2 * RUN_SECONDS + 1, outcome
    daemon.seen_or_wait(re.compile(rf"stream {STREAM} down \(source ended\); restart 2 in"))
    assert daemon.stop() == 0
