"""The crew screen's facts as crew.py reads them: a stream's status row beside its figures in a
real metrics registry (measured fps, drops over every stage, the sound's level)."""

from __future__ import annotations

from pathlib import Path

from edged.metrics import Metrics
from edged.web.crew import cameras, samples
from edged.web.crew_view import CameraFacts

ROW = {
    "stream": "cam-usb-1",
    "state": "up",
    "reason": "encoding with libx264",
    "source": "v4l2",
    "width": 1280,
    "height": 720,
    "fps": 30,
    "recording": True,
    "audio": "audio: hw:1",
    "audio_device": "hw:1",
}


def test_a_streams_row_beside_its_metrics(tmp_path: Path) -> None:
    metrics = Metrics(version="1", node="box", event="e", data_dir=tmp_path)
    streams = metrics.streams
    streams.stream("cam-usb-1")
    streams.fps.labels("cam-usb-1").set(29.5)
    streams.dropped.labels("cam-usb-1", "encode").inc(3)
    streams.dropped.labels("cam-usb-1", "output").inc(2)
    streams.dropped.labels("other", "capture").inc(7)
    streams.audio_level.labels("cam-usb-1").set(-18.0)
    quiet = {**ROW, "stream": "other", "audio": "no audio device", "audio_device": None}
    assert cameras([ROW, quiet], metrics) == (
        CameraFacts(
            "cam-usb-1",
            state="up",
            reason="encoding with libx264",
            source="v4l2",
            width=1280,
            height=720,
            fps_target=30,
            fps=29.5,
            drops=5,
            audio="audio: hw:1",
            audio_device="hw:1",
            audio_dbfs=-18.0,
            recording=True,
        ),
        CameraFacts(
            "other",
            state="up",
            reason="encoding with libx264",
            source="v4l2",
            width=1280,
            height=720,
            fps_target=30,
            drops=7,
            audio="no audio device",
            recording=True,
        ),
    )


def test_samples_by_their_label_values(tmp_path: Path) -> None:
    metrics = Metrics(version="1", node="box", event="e", data_dir=tmp_path)
    metrics.streams.temperature.labels("cpu").set(51.0)
    metrics.upload.queue_files.set(4)
    assert samples(metrics.streams.temperature, "edged_temperature_celsius") == {("cpu",): 51.0}
    assert samples(metrics.upload.queue_files, "edged_upload_queue_files") == {(): 4.0}
    assert samples(metrics.upload.queue_files, "no_such_sample") == {}
