"""Clip jobs on a real daemon recording the lavfi test pattern with its sound (320x240, 2 s
segments): a range not recorded is refused with 422 and what is recorded; an original and a
vertical fill (through the API) and a vertical crop (through `edged clips make --wait`) are cut
across segment boundaries, decode, show in /api/v1/assets and reach the bucket (moto) with their
sidecars under <event>/<node>/clips/; a job whose daemon is SIGKILLed mid-cut starts again on
the next start and finishes, nothing half-written ever visible."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import StartDaemon
from tests.integration.test_clip_cut import FPS, GOP, SETTINGS, decoded, frames_shown, moment
from tests.integration.test_daemon import http
from tests.integration.upload_support import BUCKET, minio_client, moto, upstream_settings
from tests.s3server import MotoProcess
from tests.support import DaemonProcess, run_edged, until

__all__ = ["moto"]  # fixture

pytestmark = pytest.mark.integration

RECORDED = re.compile(r"recorded \S+\.mp4: \d+ frames")


def call(
    daemon: DaemonProcess, method: str, path: str, body: object = None
) -> tuple[int, dict[str, Any]]:
    assert daemon.data_dir is not None
    token = (daemon.data_dir / "admin.token").read_text().strip()
    request = urllib.request.Request(  # noqa: S310 - loopback
        daemon.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def sidecars(daemon: DaemonProcess) -> list[dict[str, Any]]:
    assert daemon.data_dir is not None
    paths = sorted((daemon.data_dir / "spool" / "test-pattern").glob("*.json"))
    return [json.loads(path.read_text()) for path in paths]


def utc(seconds: float) -> str:
    from edged.clips.plan import format_utc

    return format_utc(seconds)


def finished(daemon: DaemonProcess, job: int, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        _, answer = call(daemon, "GET", f"/api/v1/jobs/{job}")
        return answer if answer["state"] in ("done", "failed") else None

    answer = until(probe, timeout, f"clip job {job} finished")
    assert answer["state"] == "done", answer
    return answer


def asset_bytes(daemon: DaemonProcess, name: str, target: Path) -> Path:
    target.parent.mkdir(exist_ok=True)
    with urllib.request.urlopen(f"{daemon.url}/assets/{name}", timeout=10) as response:  # noqa: S310
        target.write_bytes(response.read())
    return target


def test_clips_are_refused_cut_cached_and_uploaded(
    start_daemon: StartDaemon, moto: MotoProcess, tmp_path: Path
) -> None:
    daemon = start_daemon({**SETTINGS, "upstream": upstream_settings(tmp_path, moto)})
    for _ in range(3):
        daemon.wait_for(RECORDED, timeout=30)
    first, second, third = sidecars(daemon)[:3]

    assert http(daemon.url + "/api/v1/jobs")[0] == 401  # a crew read: titles, release times
    assert http(daemon.url + "/api/v1/clips", method="POST")[0] == 401
    status, malformed = call(daemon, "POST", "/api/v1/clips", ["not", "an", "object"])
    assert (status, malformed) == (400, {"error": "the body must be a JSON object"})
    status, refused = call(
        daemon,
        "POST",
        "/api/v1/clips",
        {"stream": "test-pattern", "start": "2020-01-01T00:00:00Z", "end": "2020-01-01T00:00:10Z"},
    )
    assert status == 422
    assert "is not recorded at all" in refused["error"]
    assert refused["available"][0]["start"] <= utc(moment(first, "start"))
    status, backwards = call(
        daemon,
        "POST",
        "/api/v1/clips",
        {"stream": "test-pattern", "start": utc(moment(second, "start")), "end": first["start"]},
    )
    assert status == 422
    assert "is not after the start" in backwards["error"]

    start, end = moment(first, "start") + 1.2, moment(second, "start") + 1.0
    status, queued = call(
        daemon,
        "POST",
        "/api/v1/clips",
        {
            "stream": "test-pattern",
            "start": utc(start),
            "end": utc(end),
            "title": "Opening",
            "variants": ["original", "vertical"],
        },
    )
    assert status == 202, queued
    crop = run_edged(
        "clips", "make", "--url", daemon.url, "--config", str(daemon.config_file),
        "--data-dir", str(daemon.data_dir), "--stream", "test-pattern",
        "--from", utc(moment(second, "start") + 0.3), "--to", utc(moment(third, "start") + 0.5),
        "--vertical", "--no-original", "--mode", "crop", "--publish-at", "2099-01-01T00:00:00Z",
        "--wait", timeout=90,
    )  # fmt: skip
    assert crop.returncode == 0, crop.stderr
    assert re.search(r"job 2 \[#+\] +100% +done", crop.stdout), crop.stdout
    done = finished(daemon, queued["job"]["id"])
    original, fill = done["clips"]
    (crop_name,) = re.findall(r"clip (\S+)", crop.stdout)

    _, assets = call(daemon, "GET", "/api/v1/assets")
    listed = {asset["name"]: asset for asset in assets["assets"]}
    assert {original, fill, crop_name} <= set(listed)
    assert listed[original]["facts"]["title"] == "Opening"
    assert listed[crop_name]["facts"]["publish_at"] == "2099-01-01T00:00:00Z"
    _, guests = http(daemon.url + "/api/v1/assets")  # a guest's list: the staged clip is not in it
    assert {asset["name"] for asset in json.loads(guests)["assets"]} == {original, fill}

    listing = run_edged(
        "clips", "list", "--url", str(daemon.url), "--data-dir", str(daemon.data_dir)
    )
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [
        ["2", "done"],
        ["1", "done"],
    ]
    shown = run_edged("clips", "show", "1", "--url", daemon.url, "--data-dir", str(daemon.data_dir))
    assert shown.stdout.splitlines() == [
        "job 1 [##############################] 100%  done",
        f"clip {original}",
        f"clip {fill}",
    ]

    frames, sound, width, height, _ = decoded(asset_bytes(daemon, original, tmp_path / "o.mp4"))
    assert (width, height) == (320, 240)
    assert abs(frames / FPS - (end - start)) <= GOP + 1 / FPS  # from the keyframe before start
    assert abs(sound - frames / FPS) <= 0.05
    frames, sound, width, height, _ = decoded(asset_bytes(daemon, fill, tmp_path / "f.mp4"))
    assert (width, height, frames) == (240, 426, frames_shown([first, second], start, end))
    assert abs(sound - frames / FPS) <= 0.05
    assert http(f"{daemon.url}/assets/{crop_name}")[0] == 404  # staged: not before publish_at
    assert daemon.data_dir is not None
    assert decoded(daemon.data_dir / "clips" / "out" / f"{crop_name}.mp4")[2:4] == (240, 426)
    served = asset_bytes(daemon, fill, tmp_path / "served" / f"{fill}.mp4")
    verified = run_edged("verify", str(served), "--data-dir", str(daemon.data_dir))
    assert verified.returncode == 0, verified.stdout  # the copy phones get is the signed one
    assert "C2PA manifest valid" in verified.stdout

    client = minio_client(moto)

    def uploaded() -> dict[str, bytes] | None:
        keys = {o.object_name for o in client.list_objects(BUCKET, "default/box/clips/", True)}
        names = (original, fill, crop_name)
        wanted = {f"default/box/clips/{n}{s}" for n in names for s in (".mp4", ".json")}
        return {k: client.get_object(BUCKET, k).read() for k in wanted} if wanted <= keys else None

    objects = until(uploaded, 60, "clips and sidecars in the bucket")
    sidecar = json.loads(objects[f"default/box/clips/{fill}.json"])
    assert sidecar["sha256"] == hashlib.sha256(objects[f"default/box/clips/{fill}.mp4"]).hexdigest()
    assert sidecar["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()  # one file
    (tmp_path / "bucket").mkdir()
    for name in (original, fill):
        upstream = tmp_path / "bucket" / f"{name}.mp4"
        upstream.write_bytes(objects[f"default/box/clips/{name}.mp4"])
        verified = run_edged("verify", str(upstream), "--data-dir", str(daemon.data_dir))
        assert verified.returncode == 0, verified.stdout
    assert sidecar["variant"] == "vertical" and sidecar["precision"] == "frame-accurate"
    assert [s["file"] for s in sidecar["sources"]] == [
        Path(first["path"]).name,
        Path(second["path"]).name,
    ]
    status, metrics = 200, urllib.request.urlopen(f"{daemon.url}/metrics").read().decode()  # noqa: S310
    assert 'edged_clip_jobs{state="done"} 2.0' in metrics
    assert "edged_clip_job_seconds_count 2.0" in metrics


def test_a_job_killed_mid_cut_starts_again_and_finishes(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon(SETTINGS)
    for _ in range(3):
        daemon.wait_for(RECORDED, timeout=30)
    first, *_, last = sidecars(daemon)[:3]
    body = {
        "stream": "test-pattern",
        "start": utc(moment(first, "start") + 0.1),
        "end": utc(moment(last, "end") - 0.1),
        "variants": ["vertical"],
    }
    status, queued = call(daemon, "POST", "/api/v1/clips", body)
    assert status == 202, queued

    def cutting() -> bool:
        _, job = call(daemon, "GET", "/api/v1/jobs/1")
        assert job["state"] != "done", "the cut ended before the kill: make it longer"
        return job["state"] == "running" and job["progress"] > 0

    until(cutting, 30, "the cut under way")
    (worker,) = [
        child
        for child in psutil.Process(daemon.process.pid).children()
        if "edged.clips.worker" in " ".join(child.cmdline())
    ]
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)
    until(lambda: not worker.is_running(), 10, "the worker dead with its daemon (PDEATHSIG)")
    assert daemon.data_dir is not None
    out = daemon.data_dir / "clips" / "out"
    assert [path.name for path in out.iterdir() if not path.name.startswith(".")] == []

    again = start_daemon(SETTINGS)  # the same config and data dir
    again.seen_or_wait(re.compile(r"clip job 1: queued again"))
    done = finished(again, 1)
    (name,) = done["clips"]
    _, assets = call(again, "GET", "/api/v1/assets")
    assert [asset["name"] for asset in assets["assets"]] == [name]
    # Nothing hidden is left; the clip itself may already have left clips/out (in the cache,
    # no upstream: delivered).
    assert {path.name for path in out.iterdir()} <= {f"{name}.json", f"{name}.mp4"}
    assert decoded(asset_bytes(again, name, tmp_path / "again.mp4"))[2:4] == (240, 426)
