"""The bearer-token guard on every state-changing API call."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from edged.web.context import ADMIN_TOKEN
from edged.web.telemetry import FIRST_FRAME_BEACON, WATCH_BEACON

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/"
GUESTS_PREFIX = "/api/v1/guests/"
# Calls guests' pages make without a token: they change no stored state (telemetry.py).
GUEST_POSTS = frozenset({FIRST_FRAME_BEACON, WATCH_BEACON})


def _refuse(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    response.headers["WWW-Authenticate"] = 'Bearer realm="edged"'
    return response


def loggable_path(path: str) -> str:
    """A path for the log: a guest's address (DELETE /api/v1/guests/<email>) stays out of it."""
    return GUESTS_PREFIX + "..." if path.startswith(GUESTS_PREFIX) else path


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without a bearer token, 403 with a wrong one, on non-safe methods under /api/ (but
    the guests' reports)."""
    if (
        request.method in SAFE_METHODS
        or not request.path.startswith(API_PREFIX)
        or (request.method == "POST" and request.path in GUEST_POSTS)
    ):
        return await handler(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return _refuse(401, "this call changes state: send Authorization: Bearer <admin token>")
    expected = request.app[ADMIN_TOKEN]
    # aiohttp decodes header bytes that are not UTF-8 as surrogates; encode them back, not fail.
    if not hmac.compare_digest(_raw(presented.strip()), _raw(expected)):
        logger.warning(
            "refused %s %s from %s: wrong token",
            request.method,
            loggable_path(request.path),
            request.remote,
        )
        return _refuse(403, "wrong admin token")
    return await handler(request)
