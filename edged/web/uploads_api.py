"""The uploads API: list the queue, enqueue a file of the data dir, retry a failed file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from edged.upload.journal import JournalError
from edged.upload.report import upload_report
from edged.upload.state import FileState, InvalidTransition
from edged.upload.uploader import Uploader
from edged.web.context import CONTEXT

routes = web.RouteTableDef()

KINDS = ("clip", "highlight", "recording", "file")


def _bad(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _uploader(request: web.Request) -> Uploader:
    uploader = request.app[CONTEXT].uploader
    if uploader is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "the uploader is not running"}),
            content_type="application/json",
        )
    return uploader


def data_dir_file(data_dir: Path, raw: str) -> Path | None:
    """`raw` as a regular file inside the data dir, or None: nothing outside is reachable."""
    if not raw or "\x00" in raw:
        return None
    candidate = (data_dir / raw).resolve()
    if not candidate.is_relative_to(data_dir.resolve()) or not candidate.is_file():
        return None
    return candidate


@routes.get("/api/v1/uploads")
async def list_uploads(request: web.Request) -> web.Response:
    uploader = _uploader(request)
    report = await asyncio.to_thread(upload_report, uploader.journal)
    report["upstream"] = {"configured": uploader.configured, "up": uploader.online}
    return web.json_response(report)


@routes.post("/api/v1/uploads")
async def enqueue(request: web.Request) -> web.Response:
    _uploader(request)
    context = request.app[CONTEXT]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad(
            400, 'send JSON: {"path": "<file in the data dir>", "stream": "...", "kind": "..."}'
        )
    if not isinstance(body, dict) or not isinstance(body.get("path"), str):
        return _bad(400, '"path" (a file inside the data dir) is required')
    kind = body.get("kind", "file")
    stream = body.get("stream", "manual")
    if kind not in KINDS:
        return _bad(400, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    path = data_dir_file(context.data_dir, body["path"])
    if path is None:
        return _bad(404, f"no file {body['path']!r} inside the data dir")
    try:
        file_id = await context.enqueue_upload(path, str(stream), str(kind))
    except ValueError as error:
        return _bad(400, str(error))
    except JournalError as error:
        return _bad(507, str(error))
    return web.json_response({"id": file_id, "state": FileState.QUEUED.value}, status=202)


@routes.post("/api/v1/uploads/{file_id:\\d+}/retry")
async def retry(request: web.Request) -> web.Response:
    uploader = _uploader(request)
    file_id = int(request.match_info["file_id"])
    if await asyncio.to_thread(uploader.journal.get, file_id) is None:
        return _bad(404, f"no upload {file_id}")
    try:
        state = await uploader.retry(file_id)
    except InvalidTransition as error:
        return _bad(409, f"upload {file_id}: {error}; only failed uploads can be retried")
    return web.json_response({"id": file_id, "state": state.value})
