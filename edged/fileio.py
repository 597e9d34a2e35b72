"""Small file helpers every subsystem uses: hashing and crash-safe replacement."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write a temporary file beside `path`, sync it, and rename it over `path`.

    `mode` is that of a new file, less the umask (as for open()); a reader sees the old bytes or
    the new, never a part.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
