"""Headless Chromium, driven by Playwright, plays the live page (WebRTC, HLS) and the watch page
of a running edged, and their sound after the guest's tap on "Tap for sound"."""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.support import loopback_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Where the pages' pictures go: the test's own directory, or (EDGED_SCREENSHOTS=docs, as the
# README's pictures were made) a directory of the caller's choice.
PICTURES = os.environ.get("EDGED_SCREENSHOTS", "")


def picture(tmp_path: Path, name: str) -> Path:
    return (Path(PICTURES).resolve() if PICTURES else tmp_path) / name


# A network of the test's own: a veth pair in a fresh namespace, so the browser's WebRTC and
# the daemon meet there and nothing reaches any other host.
NAMESPACE_SETUP = (
    "ip link set lo up && ip link add v0 type veth peer name v1 && "
    "ip addr add 10.77.0.1/24 dev v0 && ip addr add 10.77.0.2/24 dev v1 && "
    'ip link set v0 up && ip link set v1 up && exec "$@"'
)


def in_namespace(*command: str) -> list[str]:
    return ["unshare", "--net", "--fork", "sh", "-c", NAMESPACE_SETUP, "sh", *command]


def run_in_namespace(*command: str) -> dict[str, object]:
    result = subprocess.run(
        in_namespace(*command),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


class Pages:
    """tests/browser/page_server.py in a network namespace of the module's own: each page is
    opened in a fresh browser context, the Chromium and (on the same config and data dir) the
    daemon kept from the run before."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            in_namespace(sys.executable, "-m", "tests.browser.page_server"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.log: collections.deque[str] = collections.deque(maxlen=100)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.asked = 0
        self.readers = [
            threading.Thread(target=self._read_answers, daemon=True),
            threading.Thread(target=self._read_log, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_answers(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith('{"id": '):
                self.answers.put(json.loads(line))
            else:
                self.log.append(line)
        self.answers.put(None)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def open(self, config: Path, data_dir: Path, path: str, *flags: str) -> dict[str, object]:
        """page_in_chromium's outcome for `path` of edged on `config` and `data_dir`."""
        assert self.process.stdin is not None, "the page server has been closed"
        self.asked += 1
        request = {"id": self.asked, "config": str(config), "data_dir": str(data_dir)}
        self.process.stdin.write(json.dumps({**request, "path": path, "flags": flags}) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 120
        while True:  # an answer to an earlier request is one its test stopped waiting for
            try:
                answer = self.answers.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                answer = None
            assert answer is not None, f"no answer for {path}:\n" + "".join(self.log)
            if answer["id"] == self.asked:
                return dict(answer["outcome"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            self.process.kill()
            for reader in self.readers:
                reader.join(timeout=5)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()


@pytest.fixture(scope="module")
def pages() -> Iterator[Pages]:
    server = Pages()
    try:
        yield server
    finally:
        server.close()
    assert server.process.returncode == 0, "".join(server.log)


# The sound of the live tests: the daemon's stand-in for a sound card.
SINE = "sine=frequency=440:sample_rate=48000"
RECORDED = re.compile(r"recorded (\S+\.mp4): \d+ frames")


def live_config(directory: Path, *, sound: bool = False) -> Path:
    """The test pattern on 10.77.0.1; with `sound`, the stand-in's tone as its sound."""
    config = directory / "edged.toml"
    tables: dict[str, dict[str, object]] = {
        "http": {"host": "10.77.0.1"},
        "mdns": {"enabled": False},
        "live": {"ice_addresses": ["10.77.0.1"]},
    }
    if sound:
        tables["media"] = {"audio_stand_in": SINE}
    config.write_text(loopback_config("box", tables))
    return config


@pytest.fixture(scope="module")
def quiet_box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a live box without sound, one for the module's tests."""
    directory = tmp_path_factory.mktemp("quiet-box")
    live_config(directory)
    return directory


@pytest.fixture(scope="module")
def sound_box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of a live box with the stand-in's tone, one for the module's tests."""
    directory = tmp_path_factory.mktemp("sound-box")
    live_config(directory, sound=True)
    return directory


def open_page(pages: Pages, directory: Path, path: str, *flags: str) -> dict[str, object]:
    """`path` of edged on `directory`'s edged.toml and data dir, in Chromium."""
    outcome = pages.open(directory / "edged.toml", directory / "data", path, *flags)
    print(f"{path}: first frame after {outcome['first_frame_ms']} ms, sound {outcome.get('sound')}")
    return outcome


# The stand-in's and the test clips' tone: a 440 Hz sine near -20 dBFS. Heard means louder than
# -40 dBFS with its loudest FFT bin (4096 points, ~12 Hz wide) within two bins of 440 Hz.
HEARD_PEAK = 0.01
TONE_HZ, TONE_WITHIN_HZ = 440.0, 2 * 48000 / 4096


def assert_sound_after_the_tap(outcome: dict[str, object], *, silent_before: bool) -> None:
    """Muted with the button shown before the tap; unmuted, the button gone and the tone heard
    after. `silent_before`: the analyser listens to the video element, which is silent muted."""
    sound = outcome.get("sound")
    assert isinstance(sound, dict), outcome["error"] or outcome
    before, after = sound["before"], sound["after"]
    assert before["muted"] is True and before["control"] is True, outcome
    if silent_before:
        assert before["peak"] == 0, outcome
    assert after["muted"] is False and after["control"] is False, outcome
    assert after["peak"] > HEARD_PEAK, outcome
    assert abs(after["frequency"] - TONE_HZ) <= TONE_WITHIN_HZ, outcome


# The live tests on one box (quiet_box, sound_box) follow each other: the page server keeps its
# daemon from one to the next.


@pytest.mark.timeout(150)
def test_chromium_plays_the_live_page_over_webrtc_and_reports_its_first_frame(
    pages: Pages, quiet_box: Path
) -> None:
    """A stream without sound: the page asks for audio too, gets none, shows no sound button."""
    outcome = open_page(pages, quiet_box, "/live/test-pattern")
    assert outcome["played"] is True, outcome["error"]
    assert outcome["reported"] == {"live-whep": 1, "live-hls": 0, "watch": 0}, outcome
    assert outcome["control"] is False, outcome


@pytest.mark.timeout(150)
def test_a_phone_offering_mdns_host_candidates_plays_the_live_page_over_webrtc(
    pages: Pages, quiet_box: Path
) -> None:
    """Phones hide their addresses behind mDNS names; the page sends its offer before any
    candidate is gathered, and the box learns the phone's address from the phone's
    connectivity checks (a peer-reflexive candidate): WebRTC, not the HLS fallback."""
    outcome = open_page(pages, quiet_box, "/live/test-pattern", "--phone")
    assert outcome["played"] is True, outcome["error"]
    assert outcome["reported"] == {"live-whep": 1, "live-hls": 0, "watch": 0}, outcome


@pytest.mark.timeout(150)
def test_the_live_page_starts_hls_again_when_its_picture_stalls(
    pages: Pages, quiet_box: Path
) -> None:
    """A segment request that never gets an answer (lost on the venue's Wi-Fi) leaves Chromium's
    player stuck on its last frame with no error; the page sees the picture not moving while it
    should play and starts HLS again (the stall once seen in CI: first frame, then nothing)."""
    outcome = open_page(pages, quiet_box, "/live/test-pattern?via=hls", "--hold-segment=next")
    assert outcome.get("held") == 1, outcome
    past = outcome["past_the_hold"]
    assert isinstance(past, dict) and past["progressed"] >= past["ahead"] + 1.5, str(outcome)


@pytest.mark.timeout(150)
def test_chromium_plays_the_live_page_over_hls_when_asked(pages: Pages, tmp_path: Path) -> None:
    """Opened as the stream starts (a box of its own): Chromium's own HLS player gives up on a
    playlist of one 1 s segment (DEMUXER_ERROR_COULD_NOT_PARSE, "segment queue never had any
    data"); the page starts it again a second later, and it plays."""
    live_config(tmp_path)
    outcome = open_page(pages, tmp_path, "/live/test-pattern?via=hls")
    assert outcome["played"] is True, outcome["error"]
    assert outcome["reported"] == {"live-whep": 0, "live-hls": 1, "watch": 0}, outcome
    # no sound in the stream: none decoded in 1.5 s of playback, no sound button
    assert outcome["audio_bytes"] == 0 and outcome["control"] is False, outcome


@pytest.mark.timeout(150)
def test_chromium_plays_the_live_page_and_its_sound_after_the_tap_over_webrtc(
    pages: Pages, sound_box: Path, tmp_path: Path
) -> None:
    """Under a phone's autoplay rules: the WHEP answer's Opus track is played muted with a "Tap
    for sound" button over the picture; after the tap the page is unmuted and the stream it
    received carries the stand-in's 440 Hz tone (createMediaStreamSource: a received WebRTC
    stream does not pass through the video element's muting, so only `after` is a measure)."""
    shot = picture(tmp_path, "live-page.png")
    landing = picture(tmp_path, "landing-page.png")
    outcome = open_page(
        pages,
        sound_box,
        "/live/test-pattern",
        f"--screenshot={shot}",
        f"--landing={landing}",
        "--sound=stream",
    )
    assert shot.read_bytes().startswith(b"\x89PNG"), "no picture of the page"
    assert outcome["reported"] == {"live-whep": 1, "live-hls": 0, "watch": 0}, outcome
    assert_sound_after_the_tap(outcome, silent_before=False)
    assert landing.read_bytes().startswith(b"\x89PNG"), "no picture of the landing page"


@pytest.mark.timeout(150)
def test_chromium_plays_the_live_page_and_its_sound_after_the_tap_over_hls(
    pages: Pages, sound_box: Path
) -> None:
    """HLS with the AAC rendition: muted with the button, then the video element's own output
    carries the tone after the tap (createMediaElementSource, silent while muted)."""
    outcome = open_page(pages, sound_box, "/live/test-pattern?via=hls", "--sound=element")
    assert outcome["reported"] == {"live-whep": 0, "live-hls": 1, "watch": 0}, outcome
    assert_sound_after_the_tap(outcome, silent_before=True)


def watch_clip(pages: Pages, tmp_path: Path, clip: Path, *flags: str) -> dict[str, object]:
    """Pin `clip` in a fresh box's cache and open its watch page (no camera, no test pattern)."""
    from tests.support import run_edged

    data_dir = tmp_path / "data"
    added = run_edged("cache", "--data-dir", str(data_dir), "add", str(clip), "--pin")
    assert added.returncode == 0, added.stderr
    config = tmp_path / "edged.toml"
    config.write_text(
        loopback_config(
            "box",
            {
                "http": {"host": "10.77.0.1"},
                "mdns": {"enabled": False},
                "media": {"test_pattern": "off"},
            },
        )
    )
    return open_page(pages, tmp_path, f"/watch/{clip.name}", *flags)


@pytest.mark.timeout(150)
def test_chromium_plays_a_cached_clip_and_its_sound_after_the_tap(
    pages: Pages, tmp_path: Path
) -> None:
    """Under a phone's autoplay rules: the clip starts muted with a "Tap for sound" button over
    it; the tap unmutes it and the video element's own output carries the clip's 440 Hz tone
    (an AudioContext analyser on createMediaElementSource, silent while muted)."""
    from tests.clips import make_clip

    clip = make_clip(tmp_path / "teaser.mp4", seconds=4, size="640x360", audio=True)
    shot = picture(tmp_path, "watch-page.png")
    outcome = watch_clip(pages, tmp_path, clip, f"--screenshot={shot}", "--sound=element")
    assert outcome["played"] is True, outcome["error"]
    # past the one-keyframe first fragment and the rest of the first GOP, into the second
    assert float(outcome["played_seconds"]) >= 1.5, outcome  # type: ignore[arg-type]
    assert outcome["reported"] == {"live-whep": 0, "live-hls": 0, "watch": 1}, outcome
    assert outcome["control"] is True, outcome
    assert_sound_after_the_tap(outcome, silent_before=True)
    assert shot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(150)
def test_chromium_plays_a_clip_of_an_edged_recording_and_its_sound_after_the_tap(
    pages: Pages, tmp_path: Path, start_daemon: StartDaemon
) -> None:
    """A segment edged recorded itself (the test pattern and the stand-in's tone: AAC from its
    audio thread), made a clip by `edged cache add`: muted with the button, heard after the tap."""
    recorder = start_daemon(
        {
            "mdns": {"enabled": False},
            "media": {"segment_seconds": 5.0, "record_test_pattern": True, "audio_stand_in": SINE},
        }
    )
    segment = recorder.wait_for(RECORDED, timeout=30).group(1)
    assert recorder.stop(timeout=30) == 0
    assert recorder.data_dir is not None
    (recorded,) = recorder.data_dir.glob(f"spool/test-pattern/{segment}")
    clip = Path(shutil.copy(recorded, tmp_path / "recorded.mp4"))
    outcome = watch_clip(pages, tmp_path, clip, "--sound=element")
    assert outcome["reported"] == {"live-whep": 0, "live-hls": 0, "watch": 1}, outcome
    assert_sound_after_the_tap(outcome, silent_before=True)


@pytest.mark.timeout(150)
def test_a_clip_without_sound_shows_no_sound_button(pages: Pages, tmp_path: Path) -> None:
    from tests.clips import make_clip

    clip = make_clip(tmp_path / "silent.mp4", seconds=3, size="640x360")
    outcome = watch_clip(pages, tmp_path, clip)
    assert outcome["played"] is True, outcome["error"]
    # 1.5 s played and no audio decoded: the page has had every chance to see sound
    assert outcome["audio_bytes"] == 0 and outcome["control"] is False, outcome
