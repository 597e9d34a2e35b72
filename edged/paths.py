"""Where edged keeps its state and finds its shipped data; the admin token file."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edged.errors import StartupError

TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
OUTBOX = "outbox"  # files the crew drops here may be queued for upstream by the uploads API
PRIVATE_DIR_MODE = 0o700

logger = logging.getLogger(__name__)


def resource_dir(name: str) -> Path:
    """A shipped data folder (`hardware`, `configs`, `systemd`), installed or in the source tree."""
    package = Path(__file__).resolve().parent
    installed = package / "_data" / name
    if installed.is_dir():
        return installed
    return package.parent / name


def resolve_data_dir(cli_value: str | None, config_value: str, environ: Mapping[str, str]) -> Path:
    """The data dir: --data-dir, [storage] data_dir, $EDGED_DATA_DIR, $STATE_DIRECTORY, XDG."""
    for candidate in (cli_value, config_value, environ.get("EDGED_DATA_DIR")):
        if candidate:
            return Path(candidate).expanduser()
    if environ.get("STATE_DIRECTORY"):
        # systemd may pass several directories separated by colons; the first is ours.
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    state_home = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "edged"


def too_open(mode: int) -> bool:
    """True when a directory's mode lets its group or others in (its files are edged's only)."""
    return bool(stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO))


def _tighten(path: Path) -> None:
    """Found looser than 0700 (made by hand, or by an older edged): one warning, then 0700."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not too_open(mode):
        return
    try:
        path.chmod(PRIVATE_DIR_MODE)
    except OSError as error:  # not its owner, or a file system without modes
        logger.warning(
            "data dir %s is mode %04o and cannot be made 0700 (%s); run: chmod 700 %s",
            path,
            mode,
            error.strerror,
            path,
        )
        return
    logger.warning("data dir %s was mode %04o, open to other users; made it 0700", path, mode)


def prepare_data_dir(path: Path) -> Path:
    """Create the data dir (mode 0700), tighten one found looser, and prove it is writable."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        _tighten(path)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise StartupError(
            f"data dir {path} is not usable: {error.strerror}; "
            "choose another with --data-dir or fix its permissions"
        ) from error
    return path.resolve()


def read_private_file(path: Path, what: str) -> str:
    """The stripped text of a secret file that only its owner may read (mode 0600 or stricter)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StartupError(
                f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {path}"
            )
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise StartupError(f"cannot read {what} {path}: {error.strerror}") from error


def _read_token(path: Path) -> str:
    token = read_private_file(path, "admin token file")
    if len(token) < 16:
        raise StartupError(
            f"admin token in {path} is shorter than 16 characters; write a longer one"
        )
    return token


def load_or_create_token(data_dir: Path, configured_file: str) -> tuple[str, Path]:
    """The admin bearer token and its file: the configured file, or one made on first start."""
    if configured_file:
        path = Path(configured_file).expanduser()
        return _read_token(path), path
    path = data_dir / TOKEN_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), path
    except OSError as error:
        raise StartupError(f"cannot create admin token file {path}: {error.strerror}") from error
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token, path
