"""The uploads API: list the queue, enqueue a file of the data dir, retry a failed file."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import stat
from pathlib import Path
from typing import Any

from aiohttp import web

from edged.datalock import LOCK_NAME
from edged.paths import OUTBOX, TOKEN_FILE
from edged.upload.journal import JournalError
from edged.upload.policy import KINDS
from edged.upload.setup import JOURNAL_FILE
from edged.upload.state import FileState, InvalidTransition
from edged.web.context import UPLOADS, UploadQueue

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

STREAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
# The folders of the data dir whose files may go upstream: the recorder's spool, the clip cache,
# and the outbox the crew drops files into. Never the data dir's own files (token, journal, lock).
QUEUEABLE_DIRS = ("spool", "cache", OUTBOX)
_NEVER_NAMES = frozenset(
    {TOKEN_FILE, LOCK_NAME, *(JOURNAL_FILE + tail for tail in ("", "-wal", "-shm", "-journal"))}
)
_NEVER_SUFFIXES = (".key", ".pem", ".token")
MAX_ID = 2**63 - 1  # SQLite's INTEGER
_NOT_QUEUEABLE = f"no such file under {', '.join(d + '/' for d in QUEUEABLE_DIRS)} of the data dir"


def _bad(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _uploads(request: web.Request) -> UploadQueue:
    uploads = request.app.get(UPLOADS)
    if uploads is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "the uploader is not running"}),
            content_type="application/json",
        )
    return uploads


def _secret_looking(name: str) -> bool:
    lowered = name.lower()
    return name in _NEVER_NAMES or lowered.endswith(_NEVER_SUFFIXES) or "secret" in lowered


def queueable_file(data_dir: Path, raw: str) -> Path | None:
    """`raw` (relative to the data dir) as a regular file under one of QUEUEABLE_DIRS, or None.

    Symlinks are followed and the target judged; a loop or any other error is None. Blocking.
    """
    if not raw or "\x00" in raw or len(raw) > 4096:
        return None
    try:
        candidate = (data_dir / raw).resolve(strict=True)
        roots = [(data_dir / folder).resolve() for folder in QUEUEABLE_DIRS]
        if not any(candidate.is_relative_to(root) and candidate != root for root in roots):
            return None
        if not stat.S_ISREG(candidate.stat().st_mode):
            return None
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a name too long
        return None
    if _secret_looking(candidate.name) or _secret_looking(Path(raw).name):
        return None
    return candidate


def parse_enqueue(body: Any) -> tuple[str, str, str] | str:
    """(path, stream, kind) from a POST body, or the reason it is refused."""
    if not isinstance(body, dict):
        return 'send a JSON object: {"path": "outbox/<file>", "stream": "...", "kind": "..."}'
    path, stream, kind = body.get("path"), body.get("stream", "manual"), body.get("kind", "file")
    if not isinstance(path, str) or not path:
        return '"path" (a file under spool/, cache/ or outbox/ of the data dir) is required'
    if not isinstance(stream, str) or not STREAM.fullmatch(stream):
        return '"stream" must be a name of letters, digits, ".", "_", "-" (at most 64)'
    if not isinstance(kind, str) or kind not in KINDS:
        return f'"kind" must be one of {", ".join(KINDS)}'
    return path, stream, kind


def parse_id(raw: str) -> int | None:
    """An upload id from the URL, None when no row could have it (past SQLite's INTEGER)."""
    digits = raw.lstrip("0") or "0"
    if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(MAX_ID)):
        return None
    number = int(digits)
    return number if 0 < number <= MAX_ID else None


@routes.get("/api/v1/uploads")
async def list_uploads(request: web.Request) -> web.Response:
    return web.json_response(await _uploads(request).report())


@routes.post("/api/v1/uploads")
async def enqueue(request: web.Request) -> web.Response:
    uploads = _uploads(request)
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
        return _bad(400, 'send JSON: {"path": "outbox/<file>", "stream": "...", "kind": "..."}')
    parsed = parse_enqueue(body)
    if isinstance(parsed, str):
        return _bad(400, parsed)
    raw, stream, kind = parsed
    path = await asyncio.to_thread(queueable_file, uploads.data_dir, raw)
    if path is None:
        return _bad(404, _NOT_QUEUEABLE)
    try:
        file_id = await uploads.enqueue(path, stream, kind)
    except ValueError as error:  # a name that cannot be part of an object key
        return _bad(400, str(error))
    except FileNotFoundError:
        return _bad(404, _NOT_QUEUEABLE)
    except (JournalError, OSError) as error:
        logger.error("could not queue %s for upstream: %s", path, error)
        return _bad(507, "the upload journal could not take the file; see the edged log")
    return web.json_response({"id": file_id, "state": FileState.QUEUED.value}, status=202)


@routes.post("/api/v1/uploads/{file_id:[0-9]+}/retry")
async def retry(request: web.Request) -> web.Response:
    uploads = _uploads(request)
    file_id = parse_id(request.match_info["file_id"])
    try:
        state = await uploads.retry(file_id) if file_id is not None else None
    except InvalidTransition as error:
        return _bad(409, f"upload {file_id}: {error}; only failed uploads can be retried")
    if state is None:
        return _bad(404, "no such upload")
    return web.json_response({"id": file_id, "state": state.value})
