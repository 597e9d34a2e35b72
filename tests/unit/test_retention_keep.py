"""Retention and clip jobs: the segments a queued job needs are spared while anything else can
free the disk, and deleted (oldest first) rather than recording stopping."""

from __future__ import annotations

from edged.media.retention import SpoolFile, plan_keeping


def files() -> list[SpoolFile]:
    return [
        SpoolFile("/s/a.mp4", 100, 1.0, True),
        SpoolFile("/s/b.mp4", 100, 2.0, True),  # kept
        SpoolFile("/s/c.mp4", 100, 3.0, True),  # kept
        SpoolFile("/s/d.mp4", 100, 4.0, True),
    ]


KEPT = frozenset({"/s/b.mp4", "/s/c.mp4"})


def test_kept_segments_are_spared_while_others_free_enough() -> None:
    decision = plan_keeping(files(), KEPT, 0, 200, delete_unuploaded=False)
    assert [f.path for f in decision.delete] == ["/s/a.mp4", "/s/d.mp4"]
    assert not decision.stop_recording


def test_kept_segments_go_oldest_first_rather_than_recording_stopping() -> None:
    decision = plan_keeping(files(), KEPT, 0, 300, delete_unuploaded=False)
    assert [f.path for f in decision.delete] == ["/s/a.mp4", "/s/d.mp4", "/s/b.mp4"]
    assert (decision.stop_recording, decision.freed) == (False, 300)


def test_recording_stops_only_when_even_the_kept_ones_do_not_suffice() -> None:
    decision = plan_keeping(files(), KEPT, 0, 500, delete_unuploaded=False)
    assert len(decision.delete) == 4
    assert decision.stop_recording


def test_a_kept_recording_not_uploaded_stays_unless_allowed() -> None:
    waiting = [SpoolFile("/s/b.mp4", 100, 2.0, False)]
    assert plan_keeping(waiting, KEPT, 0, 100, delete_unuploaded=False).delete == ()
    assert len(plan_keeping(waiting, KEPT, 0, 100, delete_unuploaded=True).delete) == 1


def test_nothing_goes_above_the_floor() -> None:
    assert plan_keeping(files(), KEPT, 1000, 500, delete_unuploaded=False).delete == ()
