"""The commands a MotoProcess sends its child (tests/s3server.py `answer`), on a server that is
not serving: the hooks set and the tallies read are the child's S3Server's own."""

from __future__ import annotations

import pytest

from tests.s3server import S3Server, answer


def test_set_applies_the_fault_hooks() -> None:
    server = S3Server()
    answer(server, 'set {"max_skew_seconds": 900, "clock_offset_seconds": 172800.0}')
    assert (server.max_skew_seconds, server.clock_offset_seconds) == (900, 172800.0)
    answer(server, 'set {"head_etag": "\\"0badc0de-7\\""}')
    assert server.head_etag is not None and server.head_etag("anything") == '"0badc0de-7"'
    answer(server, 'set {"head_etag": null, "part_put_allowance": 2}')
    assert server.head_etag is None and server.part_put_allowance == 2


def test_get_reads_a_copy_of_a_tally() -> None:
    server = S3Server()
    server.heads.append("/edged/assets/a.mp4")
    heads = answer(server, "get heads")
    assert heads == ["/edged/assets/a.mp4"] and heads is not server.heads
    assert answer(server, "get skew_refusals") == 0
    server.part_puts[("/edged/a.mp4", 1)] += 2
    assert answer(server, "total_part_puts a.mp4") == 2


@pytest.mark.parametrize(
    "line", ["get _lock", 'set {"access_key": "other"}', "reboot", "get access_key"]
)
def test_anything_else_is_refused(line: str) -> None:
    server = S3Server()
    with pytest.raises(ValueError, match=r"unknown command|not a fault hook"):
        answer(server, line)
    assert server.access_key != "other"
