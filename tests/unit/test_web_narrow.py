"""The routes ask their narrow interfaces (LiveView, ClipStore) and never reach into the media
side or the store's directories (issue #13 item 2); the PUT refusal names no path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edged.web
from edged.media.live import LiveHub
from edged.metrics import Metrics
from edged.web.assets import public_reason
from tests.web_context import live_view

WEB = Path(edged.web.__file__).parent
# The adapters implement the interfaces over the daemon's parts; every other module is routes,
# the app, or the interfaces themselves.
ROUTES = sorted(path for path in WEB.glob("*.py") if path.name != "adapters.py")
INTERNAL_NAMES = {"LiveHub", "WhepSessions", "LazyWhep", "AssetStore", "MediaManager"}
INTERNAL_ATTRIBUTES = {"hls", "gop", "extradata", "hls_viewers", "whep", "root", "incoming"}


def _reaches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.module == "edged.media.webrtc":
                found.append(f"{path.name}:{node.lineno} imports edged.media.webrtc")
            found += [
                f"{path.name}:{node.lineno} imports {alias.name}"
                for alias in node.names
                if alias.name in INTERNAL_NAMES
            ]
        elif isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES:
            found.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    return found


@pytest.mark.parametrize("path", ROUTES, ids=lambda path: path.name)
def test_web_modules_use_only_the_narrow_interfaces(path: Path) -> None:
    assert _reaches(path) == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "put-junk.mp4-41-99 is not a media file PyAV can open: [Errno 1094995529] Invalid"
            " data found when processing input: '/var/lib/edged/cache/incoming/put-junk.mp4-41-99'",
            "junk.mp4 is not a media file PyAV can open: [Errno 1094995529] Invalid data found"
            " when processing input: 'junk.mp4'",
        ),
        (
            "junk.mp4 could not be transcoded: libx264: /tmp/x/incoming/junk.mp4.41.7.mp4 failed",
            "junk.mp4 could not be transcoded: libx264: junk.mp4 failed",
        ),
        ("junk.mp4 has no video stream", "junk.mp4 has no video stream"),
        ("H.264/AVC at 30000/1001 fps, 1 / 2", "H.264/AVC at 30000/1001 fps, 1 / 2"),
    ],
)
def test_a_refused_clip_s_reason_names_the_clip_never_a_path(message: str, expected: str) -> None:
    assert public_reason(ValueError(message), "put-junk.mp4-41-99", "junk.mp4") == expected


class OneHub:
    """The media side with one stream that has not produced a packet yet."""

    def __init__(self, hub: LiveHub) -> None:
        self.streams = {hub.stream: hub}
        self._hub = hub

    def hub(self, name: str) -> LiveHub | None:
        return self._hub if name == self._hub.stream else None

    def request_keyframe(self, name: str) -> None:
        """Nothing to ask: no encoder."""


async def test_the_live_view_answers_nothing_yet_and_a_delete_loads_no_webrtc(
    tmp_path: Path,
) -> None:
    hub = LiveHub("cam", 320, 240, 15, expects_audio=False)
    view = live_view(OneHub(hub), Metrics(version="0", node="n", event="e", data_dir=tmp_path))
    assert view.stream_names() == ["cam"]
    assert view.has_stream("cam") and not view.has_stream("other")
    for stream in ("cam", "other"):
        assert view.playlist(stream) is None
        assert view.init_segment(stream, "0123abcd") is None
        assert view.segment(stream, "0123abcd", 0) is None
        assert await view.poster(stream) is None
        view.note_hls_client(stream, "192.0.2.7")
    assert view.hls_viewer_count("cam") == 1
    assert view.hls_viewer_count("other") == 0
    assert not await view.whep_delete("cam", "no-such-session")
    assert view._whep.loaded() is None  # aiortc stays unloaded: no viewer ever came
    hub.close()
