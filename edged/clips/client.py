"""`edged clips make|list|show`: the running daemon's clip API from the command line.

The daemon owns the job queue, so the commands talk to it over HTTP on loopback with the admin
token from the data dir; a terminal gets a progress bar that redraws in place, a pipe one line
per change.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edged.errors import EdgedError
from edged.paths import TOKEN_FILE, read_private_file

POLL_SECONDS = 0.5
BAR_WIDTH = 30
FINAL = ("done", "failed")
ADVERTISED_FILE = "advertised.json"  # discovery.py writes it while mDNS advertises the box


class DaemonUnreachable(EdgedError):
    """The daemon did not answer (not running, or another port)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class ClipClient:
    """The clips and jobs routes of one daemon."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the daemon's own URL
            self.url + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return Answer(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as error:
            try:
                return Answer(error.code, json.loads(error.read() or b"{}"))
            except ValueError:
                return Answer(error.code, {"error": error.reason})
        except (urllib.error.URLError, OSError) as error:
            raise DaemonUnreachable(
                f"no edged daemon answers at {self.url} ({getattr(error, 'reason', error)}); "
                "is it running? (--url names another)"
            ) from None


def bar(job: Mapping[str, Any], width: int = BAR_WIDTH) -> str:
    """`job 3 [#########.....]  60%  running  ETA 12 s`, or the state and its reason."""
    progress = float(job.get("progress") or 0.0)
    filled = round(progress * width)
    line = (
        f"job {job['id']} [{'#' * filled}{'.' * (width - filled)}] {progress:4.0%}  {job['state']}"
    )
    if job.get("eta_seconds") is not None:
        line += f"  ETA {float(job['eta_seconds']):.0f} s"
    if job.get("reason"):
        line += f"  ({job['reason']})"
    return line


def summary(job: Mapping[str, Any]) -> str:
    """One line of `edged clips list`."""
    title = f"  {job['title']!r}" if job.get("title") else ""
    return (
        f"{job['id']:>5}  {job['state']:8} {float(job.get('progress') or 0):4.0%}  "
        f"{job['stream']}  {job['start']} to {job['end']}  {'+'.join(job['variants'])}{title}"
    )


def follow(
    client: ClipClient,
    job_id: int,
    out: TextIO,
    *,
    terminal: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Show a job's progress until it is done or failed; the last answer."""
    shown = ""
    while True:
        answer = client.call("GET", f"/api/v1/jobs/{job_id}")
        if answer.status != 200:
            raise EdgedError(f"job {job_id}: {answer.body.get('error', answer.status)}")
        line = bar(answer.body)
        if terminal:
            out.write("\r" + line.ljust(len(shown)))
        elif line != shown:
            out.write(line + "\n")
        out.flush()
        shown = line
        if answer.body["state"] in FINAL:
            if terminal:
                out.write("\n")
            return answer.body
        sleep(POLL_SECONDS)


def outcome(job: Mapping[str, Any], out: TextIO) -> int:
    """Print what a finished job made; 0 when done, 1 when failed."""
    if job["state"] == "done":
        for name in job.get("clips", []):
            out.write(f"clip {name}\n")
        return 0
    out.write(f"job {job['id']} failed: {job.get('reason') or 'no reason given'}\n")
    return 1


def refused(answer: Answer, err: TextIO = sys.stderr) -> int:
    err.write(f"edged: clip refused: {answer.body.get('error', answer.status)}\n")
    for span in answer.body.get("available", []):
        err.write(f"  recorded: {span['start']} to {span['end']}\n")
    return 1


def daemon_url(host: str, port: int, data_dir: Path) -> str:
    """The daemon's base URL on this box: its advertised port (mDNS on), else [http] port; the
    configured host, or loopback for a wildcard."""
    try:
        advertised = json.loads((data_dir / ADVERTISED_FILE).read_text(encoding="utf-8"))
        port = int(advertised["port"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    address = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
    address = f"[{address}]" if ":" in address else address
    return f"http://{address}:{port}"


def admin_token(configured_file: str, data_dir: Path) -> str:
    """The admin token the daemon made (or the configured file's)."""
    path = Path(configured_file).expanduser() if configured_file else data_dir / TOKEN_FILE
    return read_private_file(path, "admin token file")


def make(
    client: ClipClient, body: Mapping[str, Any], out: TextIO, *, wait: bool, terminal: bool
) -> int:
    """Queue a job; with `wait`, follow it to the end."""
    answer = client.call("POST", "/api/v1/clips", body)
    if answer.status != 202:
        return refused(answer)
    job = answer.body["job"]
    variants = "+".join(job["variants"])
    out.write(
        f"job {job['id']} queued: {job['stream']} {job['start']} to {job['end']}, {variants}\n"
    )
    if not wait:
        return 0
    return outcome(follow(client, int(job["id"]), out, terminal=terminal), out)


def list_jobs(client: ClipClient, out: TextIO, *, as_json: bool) -> int:
    answer = client.call("GET", "/api/v1/jobs")
    if answer.status != 200:
        return refused(answer)
    if as_json:
        out.write(json.dumps(answer.body, indent=2) + "\n")
    for job in [] if as_json else answer.body["jobs"]:
        out.write(summary(job) + "\n")
    return 0


def show(
    client: ClipClient, job_id: int, out: TextIO, *, as_json: bool, wait: bool, terminal: bool
) -> int:
    """One job: as JSON, or its progress bar (followed to the end with `wait`)."""
    answer = client.call("GET", f"/api/v1/jobs/{job_id}")
    if answer.status != 200:
        return refused(answer)
    if as_json:
        out.write(json.dumps(answer.body, indent=2) + "\n")
        return 0
    if wait and answer.body["state"] not in FINAL:
        return outcome(follow(client, job_id, out, terminal=terminal), out)
    out.write(bar(answer.body) + "\n")
    return outcome(answer.body, out) if answer.body["state"] in FINAL else 0
