"""The doctor's peers line, from what the config and the other boxes of the event say."""

from __future__ import annotations

from edged.doctor import FAIL, OK, WARN, peers_check


def test_switched_off_is_ok_and_says_so() -> None:
    check = peers_check(enabled=False, off="", secret_problem="", event="gala", answers={})
    assert (check.name, check.status) == ("peers", OK)
    assert check.detail == (
        "peer replication switched off ([peers] enabled = false or [mdns] enabled = false)"
    )


def test_a_lone_box_without_a_secret_is_fine() -> None:
    check = peers_check(
        enabled=True, off="no [peers] secret_file", secret_problem="", event="gala", answers={}
    )
    assert check.status == OK
    assert check.detail == "off: no [peers] secret_file"


def test_off_while_boxes_of_the_event_answer_warns_and_names_them() -> None:
    check = peers_check(
        enabled=True,
        off="no [peers] secret_file",
        secret_problem="",
        event="gala",
        answers={"tent-c": "", "tent-b": ""},
    )
    assert check.status == WARN
    assert "tent-b, tent-c" in check.detail
    assert "secret_file" in check.advice


def test_a_secret_edged_cannot_use_fails() -> None:
    check = peers_check(
        enabled=True,
        off="",
        secret_problem="the peer secret is too short",  # noqa: S106 - a message, not a secret
        event="gala",
        answers={},
    )
    assert check.status == FAIL
    assert check.detail == "the peer secret is too short"
    assert "will not start" in check.advice


def test_no_other_box_of_the_event_warns() -> None:
    check = peers_check(enabled=True, off="", secret_problem="", event="gala", answers={})
    assert check.status == WARN
    assert "'gala'" in check.detail


def test_a_box_refusing_the_signature_is_named_with_why() -> None:
    check = peers_check(
        enabled=True,
        off="",
        secret_problem="",
        event="gala",
        answers={"tent-b": "", "tent-c": "refused this box's signature"},
    )
    assert check.status == WARN
    assert check.detail == "tent-c: refused this box's signature"


def test_every_box_answering_is_ok_and_names_them() -> None:
    check = peers_check(
        enabled=True, off="", secret_problem="", event="gala", answers={"tent-c": "", "tent-b": ""}
    )
    assert check.status == OK
    assert check.detail == "sharing clips with tent-b, tent-c (event 'gala')"
