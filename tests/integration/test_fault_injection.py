"""Nothing lost, nothing duplicated, nothing dead: the daemon records and uploads while a seeded
script injects the faults of issue 12 in a bounded loop (upstream stopped and started, SIGKILL,
a second instance, a queued file replaced, a concurrent `uploads push`, hostile requests). Then
every recorded segment and every pushed file must be upstream once, with its sha256."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon
from tests.integration.upload_support import BUCKET, MiB, minio_client, s3, upstream_settings
from tests.s3server import S3Server
from tests.support import DaemonProcess, run_edged, until

pytestmark = pytest.mark.integration
__all__ = ["s3"]  # fixture

ROUNDS = 12
SEED = 12


def request(
    daemon: DaemonProcess,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    call = urllib.request.Request(  # noqa: S310 - loopback
        daemon.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Run:
    """The daemon under test, restarted by the faults, and what the test expects upstream."""

    def __init__(self, start_daemon: StartDaemon, settings: dict[str, Any]) -> None:
        self._start = start_daemon
        self.settings = settings
        self.daemon = start_daemon(settings)
        assert self.daemon.data_dir is not None
        self.data_dir = self.daemon.data_dir
        self.token = (self.data_dir / "admin.token").read_text().strip()
        self.pushed: dict[str, Path] = {}  # object name -> the local file it must equal
        self.failed_on_purpose: set[str] = set()  # object names whose rows must end failed
        self.counter = 0

    def restart(self, settings: dict[str, Any] | None = None) -> None:
        self.daemon = self._start(settings or self.settings)

    def push_over_api(self, name: str, size: int, subfolder: str = "") -> Path:
        folder = self.data_dir / "outbox" / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(random.randbytes(size))
        relative = str(path.relative_to(self.data_dir))
        status, body = request(
            self.daemon,
            "/api/v1/uploads",
            method="POST",
            body=json.dumps({"path": relative, "stream": "pushed"}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        assert status == 202, body
        return path

    def uploads(self) -> dict[str, Any]:
        crew = {"Authorization": f"Bearer {self.token}"}
        status, body = request(self.daemon, "/api/v1/uploads", headers=crew)
        assert status == 200
        return dict(json.loads(body))

    def assert_alive(self) -> None:
        status, body = request(self.daemon, "/readyz")
        assert status == 200, body
        assert json.loads(body)["failing_tasks"] == {}


def fault_upstream_outage(run: Run, s3: S3Server) -> None:
    s3.stop()
    run.counter += 1
    run.pushed[f"o{run.counter}.bin"] = run.push_over_api(f"o{run.counter}.bin", 6 * MiB)
    run.daemon.wait_for(re.compile(r"upstream unavailable|upload \d+ attempt"), timeout=30)
    s3.start()


def fault_sigkill(run: Run, s3: S3Server) -> None:
    run.counter += 1
    run.pushed[f"k{run.counter}.bin"] = run.push_over_api(f"k{run.counter}.bin", 12 * MiB)
    run.daemon.process.send_signal(signal.SIGKILL)
    run.daemon.process.wait(timeout=10)
    run.restart()


def fault_second_instance(run: Run, s3: S3Server) -> None:
    assert run.daemon.config_file is not None
    second = run_edged(
        "run", "--config", str(run.daemon.config_file), "--data-dir", str(run.data_dir)
    )
    assert second.returncode == 3, second.stderr
    assert f"process {run.daemon.process.pid}" in second.stderr


def fault_file_replaced(run: Run, s3: S3Server) -> None:
    run.counter += 1
    name = f"r{run.counter}.bin"
    s3.stop()  # so that the row is still queued when the file changes
    path = run.push_over_api(name, 2 * MiB)
    saved = path.stat()
    path.write_bytes(random.randbytes(2 * MiB + 1))  # the crew saves a new version
    os.utime(path, ns=(saved.st_atime_ns, saved.st_mtime_ns + 1_000_000_000))  # a new mtime
    run.failed_on_purpose.add(name)
    gone = run.push_over_api(name + ".gone", 1 * MiB, subfolder=f"sub{run.counter}")
    shutil.rmtree(gone.parent)
    gone.parent.write_text("a file where a folder was")
    run.failed_on_purpose.add(gone.name)
    s3.start()


def fault_concurrent_push(run: Run, s3: S3Server) -> None:
    run.counter += 1
    path = run.data_dir / "outbox" / f"c{run.counter}.bin"
    path.write_bytes(random.randbytes(1 * MiB))
    result = run_edged("uploads", "push", str(path), "--data-dir", str(run.data_dir))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    run.pushed[path.name] = path
    status, _ = request(
        run.daemon,
        "/api/v1/uploads",
        method="POST",
        body=json.dumps({"path": f"outbox/{path.name}", "stream": "pushed"}).encode(),
        headers={"Authorization": f"Bearer {run.token}", "Content-Type": "application/json"},
    )
    assert status == 202


def fault_hostile_requests(run: Run, s3: S3Server) -> None:
    auth = {"Authorization": f"Bearer {run.token}", "Content-Type": "application/json"}
    for path, method, body, headers in (
        ("/api/v1/uploads", "POST", b'{"path": "admin.token"}', auth),
        ("/api/v1/uploads", "POST", b'{"path": "outbox/x", "stream": null}', auth),
        ("/api/v1/uploads", "POST", b"[" * 100_000 + b"]" * 100_000, auth),
        ("/api/v1/uploads/99999999999999999999999/retry", "POST", b"", auth),
        ("/api/v1/uploads", "POST", b"{}", {"Authorization": "Bearer nope"}),
        ("/assets/none.mp4", "GET", None, {"Range": "bytes=" + "9" * 4301 + "-"}),
        ("/live/test-pattern/whep", "POST", b"v=0\r\n", {"Content-Type": "application/sdp"}),
    ):
        status, answer = request(run.daemon, path, method=method, body=body, headers=headers)
        assert 400 <= status < 500, (path, status, answer)
        assert str(run.data_dir) not in answer.decode("utf-8", "replace")


FAULTS = [
    fault_upstream_outage,
    fault_sigkill,
    fault_second_instance,
    fault_file_replaced,
    fault_concurrent_push,
    fault_hostile_requests,
]


@pytest.mark.timeout(420)
def test_faults_lose_nothing_duplicate_nothing_and_kill_no_task(
    tmp_path: Path, s3: S3Server, start_daemon: StartDaemon
) -> None:
    random.seed(SEED)
    settings: dict[str, Any] = {
        "mdns": {"enabled": False},
        "upstream": upstream_settings(tmp_path, s3),
        "upload": {"part_size": "5MiB"},
        "media": {"record_test_pattern": True, "segment_seconds": 1.0, "gop_seconds": 0.5},
    }
    run = Run(start_daemon, settings)
    order = [FAULTS[i % len(FAULTS)] for i in range(ROUNDS)]
    random.shuffle(order)
    for fault in order:
        run.daemon.wait_for(re.compile(r"recorded \S+"), timeout=30)  # footage keeps coming
        fault(run, s3)
        run.assert_alive()

    # No more footage: the last run only finishes what is queued (and what the kills left).
    assert run.daemon.stop() == 0
    run.restart({**settings, "media": {**settings["media"], "test_pattern": "off"}})
    until(lambda: run.uploads()["queue"]["files"] == 0, 120, "the queue empties")
    run.assert_alive()
    report = run.uploads()
    states = {Path(row["key"]).name: row["state"] for row in report["files"]}
    failed = {name for name, state in states.items() if state == "failed"}
    assert failed == run.failed_on_purpose, [
        (row["key"], row["last_error"]) for row in report["files"] if row["state"] == "failed"
    ]

    objects = {o.object_name: o for o in minio_client(s3).list_objects(BUCKET, recursive=True)}
    by_name: dict[str, list[str]] = {}
    for key in objects:
        by_name.setdefault(Path(key).name, []).append(key)
    duplicated = {name: keys for name, keys in by_name.items() if len(keys) > 1}
    assert not duplicated

    client = minio_client(s3)

    def upstream_sha256(name: str) -> str:
        (key,) = by_name[name]
        response = client.get_object(BUCKET, key)
        try:
            return hashlib.sha256(response.read()).hexdigest()
        finally:
            response.close()
            response.release_conn()

    segments = sorted((run.data_dir / "spool" / "test-pattern").glob("*.mp4"))
    assert len(segments) >= ROUNDS
    for segment in segments:
        assert upstream_sha256(segment.name) == sha256(segment), segment.name
        sidecar = segment.with_suffix(".json")
        assert upstream_sha256(sidecar.name) == sha256(sidecar), sidecar.name
    for name, path in run.pushed.items():
        assert upstream_sha256(name) == sha256(path), name
    expected = {s.name for s in segments} | {s.with_suffix(".json").name for s in segments}
    assert set(by_name) == expected | set(run.pushed)  # nothing upstream that is not here

    _, metrics = request(run.daemon, "/metrics")
    assert b"edged_upload_queue_files 0.0" in metrics
    assert run.daemon.stop() == 0
