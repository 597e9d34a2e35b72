"""Small file helpers every subsystem uses: hashing and crash-safe replacement."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from edged.errors import StartupError


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


def load_or_create_secret(path: Path, *, what: str, consequence: str, size: int = 32) -> bytes:
    """A secret kept as hex in `path`: read, or made once (0600, synced) on first start
    (blocking). `what` names it and `consequence` says what deleting it costs, in the error that
    stops the start when it is unreadable or too short."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError) as error:
            raise StartupError(
                f"{what} {path} is unreadable; delete it to make a new one ({consequence})"
            ) from error
        if len(secret) < 16:
            raise StartupError(f"{what} {path} is too short; delete it") from None
        return secret
    except OSError as error:
        raise StartupError(f"cannot create {path}: {error.strerror}") from error
    secret = secrets.token_bytes(size)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secret.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return secret
