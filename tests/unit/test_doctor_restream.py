"""`edged doctor`'s restream lines and `edged restream list`'s table, from the facts alone."""

from __future__ import annotations

import io
from typing import Any

from edged.config import RestreamConfig
from edged.doctor import FAIL, OK, WARN, restream_check
from edged.restream.client import run, table

YOUTUBE = RestreamConfig(
    stream="cam-1", url="rtmp://a.rtmp.youtube.com/live2", key_file="/k", name="youtube"
)


def row(state: str, reason: str = "", reconnects: int = 0) -> dict[str, Any]:
    return {
        "name": "youtube",
        "stream": "cam-1",
        "url": "rtmp://a.rtmp.youtube.com/live2/****",
        "enabled": state != "disabled",
        "state": state,
        "reason": reason,
        "reconnects": reconnects,
        "since": 0.0,
    }


def test_a_key_file_others_can_read_fails() -> None:
    check = restream_check(
        YOUTUBE, key_problem="key file /k is readable by others", row=None, reach=None
    )
    assert (check.name, check.status) == ("restream youtube", FAIL)
    assert "0600" in check.advice


def test_the_running_daemons_state_is_shown_masked() -> None:
    live = restream_check(YOUTUBE, key_problem=None, row=row("live", reconnects=2), reach=None)
    assert live.status == OK
    assert live.detail == (
        "rtmp://a.rtmp.youtube.com/live2/****: publishing cam-1 since 00:00:00 UTC (2 reconnects)"
    )
    failing = restream_check(
        YOUTUBE,
        key_problem=None,
        row=row("retrying", "a.rtmp.youtube.com:1935 refused", 4),
        reach=None,
    )
    assert failing.status == WARN and "refused (4 attempts failed)" in failing.detail
    off = restream_check(YOUTUBE, key_problem=None, row=row("disabled", "switched off"), reach=None)
    assert off.status == OK and off.advice == "edged restream on youtube"


def test_without_a_daemon_the_server_is_tried() -> None:
    answers = restream_check(YOUTUBE, key_problem=None, row=None, reach=None)
    assert answers.status == OK and "a.rtmp.youtube.com:1935 answers" in answers.detail
    refused = restream_check(YOUTUBE, key_problem=None, row=None, reach="connection refused by x")
    assert refused.status == WARN and refused.detail.endswith(": connection refused by x")


def test_the_cli_table_and_its_refusals() -> None:
    text = table([row("retrying", "refused")])
    assert text.startswith("youtube ") and " on  retrying " in text and "(refused)" in text
    assert table([]) == "no restream destinations ([[restream]] in the config)\n"
    out, err = io.StringIO(), io.StringIO()

    def call(method: str, path: str) -> tuple[int, dict[str, Any]]:
        assert (method, path) == ("POST", "/api/v1/restream/nope/enable")
        return 404, {"error": "no restream destination 'nope'"}

    assert run(call, "on", "nope", out, err, as_json=False) == 1
    assert err.getvalue() == "edged: restream on nope: no restream destination 'nope'\n"
