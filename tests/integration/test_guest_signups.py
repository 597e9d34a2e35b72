"""200 phones sign up at once, the box is SIGKILLed, restarted: every sign-up that got a 2xx is
there, none twice, and each reaches the bucket exactly once (read back from the JSONL objects)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

from tests.conftest import StartDaemon
from tests.integration.upload_support import BUCKET, minio_client, upstream_settings
from tests.integration.upload_support import moto as moto  # the fixture
from tests.s3server import MotoProcess
from tests.support import DaemonProcess, until

PHONES = 200
KILL_AFTER = 120  # answers seen before the SIGKILL: the rest are in flight or not yet sent


def post(port: int, phone: int, email: str, key: str) -> int | None:
    """One phone's sign-up, from its own loopback address; the status, None if cut off."""
    body = urlencode({"email": email, "name": f"Guest {phone}", "consent": "yes", "key": key})
    source = f"127.0.{1 + phone // 250}.{1 + phone % 250}"
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request(
            "POST",
            "/join",
            body,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://127.0.0.1:{port}",
            },
        )
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def guests_in_bucket(server: MotoProcess) -> list[dict[str, object]]:
    client = minio_client(server)
    rows = []
    for item in client.list_objects(BUCKET, recursive=True):
        key = str(item.object_name)
        if "/guests/" in key and key.endswith(".jsonl"):
            response = client.get_object(BUCKET, key)
            try:
                rows += [json.loads(line) for line in response.read().decode().splitlines()]
            finally:
                response.close()
                response.release_conn()
    return rows


def export(daemon: DaemonProcess) -> list[dict[str, str]]:
    """`edged guests export` beside the running daemon."""
    assert daemon.config_file is not None and daemon.data_dir is not None
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edged",
            "guests",
            "export",
            "--config",
            str(daemon.config_file),
            "--data-dir",
            str(daemon.data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_200_signups_sigkill_restart_none_lost_none_twice(
    start_daemon: StartDaemon, moto: MotoProcess, tmp_path: Path
) -> None:
    settings = {"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, moto)}
    daemon = start_daemon(settings)
    keys = [secrets.token_urlsafe(24) for _ in range(PHONES)]
    emails = [f"guest{n}@example.org" for n in range(PHONES)]
    answered: dict[int, int | None] = {}
    enough = threading.Event()
    start = threading.Barrier(PHONES)

    def phone(n: int) -> None:
        start.wait()
        answered[n] = post(daemon.port, n, emails[n], keys[n])
        if sum(status is not None for status in answered.values()) >= KILL_AFTER:
            enough.set()

    with ThreadPoolExecutor(PHONES) as pool:
        for n in range(PHONES):
            pool.submit(phone, n)
        enough.wait(timeout=60)
        daemon.process.send_signal(signal.SIGKILL)
    daemon.kill()
    ok = {n for n, status in answered.items() if status is not None and 200 <= status < 300}
    assert len(ok) >= KILL_AFTER // 2, answered  # the crowd got through before the kill

    daemon = start_daemon(settings)
    # A phone whose answer was cut off tries again with the same form; one that got its answer
    # submits twice: neither makes a second row.
    again = [n for n in range(PHONES) if n not in ok][:20] + sorted(ok)[:5]
    ok.add(0)
    again.insert(0, 0)  # phone 0 surely has a row (deleted at the end)
    for n in again:
        assert post(daemon.port, n, emails[n], keys[n]) == 200
        ok.add(n)

    on_box = export(daemon)
    emails_on_box = Counter(guest["email"] for guest in on_box)
    assert all(count == 1 for count in emails_on_box.values())
    assert {emails[n] for n in ok} <= set(emails_on_box)

    def all_in_bucket() -> list[dict[str, object]] | None:
        rows = guests_in_bucket(moto)
        return rows if {str(r["email"]) for r in rows} >= set(emails_on_box) else None

    rows = until(all_in_bucket, 60, "every sign-up on the box in the bucket")
    assert Counter(str(row["email"]) for row in rows) == emails_on_box  # each exactly once
    assert {row["type"] for row in rows} == {"signup"}

    # The crew deletes a guest: gone from the box, a deletion note in the bucket.
    token = (daemon.data_dir / "admin.token").read_text().strip()  # type: ignore[operator]
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    connection.request(
        "DELETE", f"/api/v1/guests/{emails[0]}", headers={"Authorization": f"Bearer {token}"}
    )
    assert connection.getresponse().status == 204
    connection.close()
    assert emails[0] not in {guest["email"] for guest in export(daemon)}
    until(
        lambda: any(
            r["type"] == "deletion" and r["email"] == emails[0] for r in guests_in_bucket(moto)
        ),
        60,
        "the deletion note in the bucket",
    )

    assert daemon.data_dir is not None
    guests_dir = daemon.data_dir / "guests"
    assert stat.S_IMODE(guests_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((guests_dir / "guests.db").stat().st_mode) == 0o600
    # Verified upstream, a batch's file (personal data) leaves the box.
    until(lambda: not os.listdir(guests_dir / "batches"), 30, "batch files removed")
    assert not any("@example.org" in line for line in daemon.lines)


def test_signups_made_while_the_upstream_is_away_reach_it_when_it_is_back(
    start_daemon: StartDaemon, moto: MotoProcess, tmp_path: Path
) -> None:
    moto.stop()
    daemon = start_daemon(
        {"mdns": {"enabled": False}, "upstream": upstream_settings(tmp_path, moto)}
    )
    emails = [f"offline{n}@example.org" for n in range(3)]
    for n, email in enumerate(emails):
        assert post(daemon.port, n, email, secrets.token_urlsafe(24)) == 200
    assert daemon.data_dir is not None
    batches = daemon.data_dir / "guests" / "batches"
    until(lambda: os.listdir(batches), 30, "a batch cut while the upstream is away")
    moto.start()

    def all_there() -> list[dict[str, object]] | None:
        found = guests_in_bucket(moto)
        return found if len(found) == len(emails) else None

    rows = until(all_there, 90, "the sign-ups in the bucket once it is back")
    assert sorted(str(row["email"]) for row in rows) == emails
