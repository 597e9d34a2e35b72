"""The bearer-token guard on every state-changing API call, and on the crew's reads (guests'
personal data, the clips' figures)."""

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
# Reads only the crew may make: guests' personal data, the clips' figures, the clip jobs (their
# titles and release times: a staged clip's stay the crew's), the upload queue (its object keys
# and paths name clips and guest batches). /api/v1/status shows guests counts only (api.py).
CREW_READS = (
    "/api/v1/guests",
    "/api/v1/clips/stats",
    "/api/v1/jobs",
    "/api/v1/uploads",
    "/api/v1/restream",  # the platforms' hosts and apps, their last errors (review 18, item 7)
)


def _refuse(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    response.headers["WWW-Authenticate"] = 'Bearer realm="edged"'
    return response


def loggable_path(path: str) -> str:
    """A path for the log: a guest's address (DELETE /api/v1/guests/<email>) stays out of it."""
    return GUESTS_PREFIX + "..." if path.startswith(GUESTS_PREFIX) else path


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _presented(request: web.Request) -> str:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def has_token(request: web.Request) -> bool:
    """Whether the request carries the admin token (for reads that show the crew more)."""
    presented = _presented(request)
    return bool(presented) and hmac.compare_digest(_raw(presented), _raw(request.app[ADMIN_TOKEN]))


def _guarded(request: web.Request) -> bool:
    if not request.path.startswith(API_PREFIX):
        return False
    if request.method in SAFE_METHODS:
        return request.path.startswith(CREW_READS)
    return not (request.method == "POST" and request.path in GUEST_POSTS)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without a bearer token, 403 with a wrong one, on non-safe methods under /api/ (but
    the guests' reports) and on the crew's reads."""
    if not _guarded(request):
        return await handler(request)
    if not _presented(request):
        return _refuse(401, "this call needs the crew: send Authorization: Bearer <admin token>")
    # aiohttp decodes header bytes that are not UTF-8 as surrogates; encode them back, not fail.
    if not has_token(request):
        logger.warning(
            "refused %s %s from %s: wrong token",
            request.method,
            loggable_path(request.path),
            request.remote,
        )
        return _refuse(403, "wrong admin token")
    return await handler(request)
