"""`/crew`: the crew's screen on a phone. The admin token through a login form (same-origin,
limited per client), then a signed session cookie (crew_session.py) that opens the screen and
its one JSON read, `/crew/state`; logout. The state is read from the web's keys (context.py),
never from the daemon itself, and judged by crew_view.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web
from prometheus_client.metrics import MetricWrapperBase

from edged.clock import clock_synchronized
from edged.devices.classify import STREAMABLE
from edged.media.thermal import read_pi_throttled
from edged.metrics import Metrics
from edged.web import crew_session
from edged.web.auth import has_token
from edged.web.context import (
    ADMIN_TOKEN,
    DATA_DIR,
    DEVICE_REPORT,
    IDENTITY,
    METRICS,
    RESTREAM,
    STREAM_STATUS,
    UPLOADS,
)
from edged.web.crew_page import LOGIN_PATH, LOGOUT_PATH, STATE_PATH, login_html, screen_html
from edged.web.crew_view import BoxFacts, CameraFacts, crew_state
from edged.web.join import GUEST_DESK, TRUSTED_PROXIES
from edged.web.join_guard import ClientLimiter, client_address, client_key, same_origin

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

CREW_PATH = "/crew"
MAX_FORM = 4096
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
# Nothing from another host; inline style and script only (the page's own).
POLICY = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class CrewDoor:
    """The session cookie's secret (a random one until start-up reads the data dir's) and the
    login tries' limit per client."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(crew_session.SECRET_BYTES)
        self.limiter = ClientLimiter()


CREW_DOOR = web.AppKey("crew_door", CrewDoor)


def logged_in(request: web.Request) -> bool:
    value = request.cookies.get(crew_session.COOKIE)
    return crew_session.valid(_session_key(request), value, time.time())


def _session_key(request: web.Request) -> bytes:
    return crew_session.session_key(request.app[CREW_DOOR].secret, request.app[ADMIN_TOKEN])


def _page(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    # The forms' POSTs must carry their Origin (join.py: no-referrer makes it "null").
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = POLICY
    return response


def _node(request: web.Request) -> str:
    identity = request.app[IDENTITY]
    return identity.advertised_name or identity.node


@routes.get(CREW_PATH)
async def crew_screen(request: web.Request) -> web.Response:
    if logged_in(request):
        return _page(screen_html(_node(request)))
    return _page(login_html(_node(request)))


def _to_screen() -> web.Response:
    response = web.Response(status=303, headers={"Location": CREW_PATH})
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(status: int, reason: str) -> web.Response:
    return web.Response(text=reason, status=status, content_type="text/plain")


def _cross_site(request: web.Request) -> bool:
    headers = request.headers
    return not same_origin(request.host, headers.get("Origin"), headers.get("Sec-Fetch-Site"))


def _client(request: web.Request) -> str:
    forwarded = request.headers.getall("X-Forwarded-For", [])
    proxies = request.app.get(TRUSTED_PROXIES, frozenset())
    return client_key(client_address(request.remote, forwarded, proxies))


async def _presented_token(request: web.Request) -> str | None:
    """The form's token, or None when the body is no form of a sane size."""
    if request.content_length is not None and request.content_length > MAX_FORM:
        return None
    try:
        form = await request.post()
    except ValueError:
        return None
    token = form.get("token")
    return token if isinstance(token, str) else None


@routes.post(LOGIN_PATH)
async def login(request: web.Request) -> web.Response:
    """The admin token in, a session cookie out (303 to the screen); 403 for a wrong one."""
    client = _client(request)
    if _cross_site(request):
        logger.info("crew login refused from %s: not from this box's page", client)
        return _refuse(403, "log in from this box's own page")
    if not request.app[CREW_DOOR].limiter.allow(client, time.monotonic()):
        # the tries that filled the bucket were logged; a flood past it is not, line by line
        logger.debug("crew login refused from %s: too many tries", client)
        response = _refuse(429, "too many tries; wait a minute")
        response.headers["Retry-After"] = "60"
        return response
    token = await _presented_token(request)
    if token is None:
        return _refuse(400, "send the form with the admin token")
    if not crew_session.token_matches(token, request.app[ADMIN_TOKEN]):
        logger.warning("crew login refused from %s: wrong token", client)
        return _page(login_html(_node(request), "Wrong admin token."), status=403)
    logger.info("crew logged in from %s", client)
    response = _to_screen()
    response.set_cookie(
        crew_session.COOKIE,
        crew_session.sign(_session_key(request), time.time()),
        max_age=crew_session.SESSION_SECONDS,
        path=CREW_PATH,
        httponly=True,
        samesite="Strict",
    )
    return response


@routes.post(LOGOUT_PATH)
async def logout(request: web.Request) -> web.Response:
    if _cross_site(request):
        return _refuse(403, "log out from this box's own page")
    response = _to_screen()
    response.del_cookie(crew_session.COOKIE, path=CREW_PATH)
    return response


@routes.get(STATE_PATH)
async def state(request: web.Request) -> web.Response:
    """The screen's figures as JSON: the session cookie (or the admin token) opens it."""
    if not (logged_in(request) or has_token(request)):
        return web.json_response({"error": "log in at /crew"}, status=401)
    facts = await gather(request.app)
    response = web.json_response(crew_state(facts))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the facts, from the web's keys -------------------------------------------------------------


def samples(metric: MetricWrapperBase, name: str) -> dict[tuple[str, ...], float]:
    """A metric's samples called `name`, by their label values (in the metric's label order)."""
    found: dict[tuple[str, ...], float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels.values())] = sample.value
    return found


def _one(metric: MetricWrapperBase, name: str) -> float:
    return samples(metric, name).get((), 0.0)


def cameras(status: list[dict[str, Any]], metrics: Metrics) -> tuple[CameraFacts, ...]:
    streams = metrics.streams
    fps = samples(streams.fps, "edged_stream_fps")
    levels = samples(streams.audio_level, "edged_audio_level_dbfs")
    drops: dict[str, float] = {}
    for (stream, _), count in samples(streams.dropped, "edged_frames_dropped_total").items():
        drops[stream] = drops.get(stream, 0.0) + count
    return tuple(
        CameraFacts(
            stream=(name := row["stream"]),
            state=row.get("state", ""),
            reason=row.get("reason") or "",
            source=row.get("source", ""),
            width=row.get("width", 0),
            height=row.get("height", 0),
            fps_target=row.get("fps", 0),
            fps=fps.get((name,)),
            drops=int(drops.get(name, 0)),
            audio=row.get("audio", ""),
            audio_device=row.get("audio_device"),
            audio_dbfs=levels.get((name,)),
            recording=bool(row.get("recording")),
        )
        for row in status
    )


def _board(app: web.Application) -> dict[str, Any]:
    """The device report's thermal limits and how many cameras are plugged in."""
    report_of = app.get(DEVICE_REPORT)
    if report_of is None:
        return {}
    report = report_of()
    kinds = {kind.value for kind in STREAMABLE}
    thermal = report.get("board", {}).get("thermal", {})
    return {
        "camera_devices": sum(1 for device in report["devices"] if device["kind"] in kinds),
        "soft_limit": thermal.get("soft_limit_celsius", 80.0),
        "hard_limit": thermal.get("hard_limit_celsius", 85.0),
    }


def _uploads(app: web.Application, metrics: Metrics) -> dict[str, Any]:
    upload, queue = metrics.upload, app.get(UPLOADS)
    return {
        "upstream_configured": queue.configured if queue is not None else False,
        "upstream_up": queue.online if queue is not None else False,
        "queue_files": int(_one(upload.queue_files, "edged_upload_queue_files")),
        "queue_bytes": int(_one(upload.queue_bytes, "edged_upload_queue_bytes")),
        "oldest_pending_seconds": _one(
            upload.oldest_pending, "edged_upload_oldest_pending_seconds"
        ),
    }


def _system(data_dir: Path | None) -> dict[str, Any]:
    """What the box itself tells (blocking: a thread)."""
    facts: dict[str, Any] = {
        "throttled": read_pi_throttled(),
        "clock_synced": clock_synchronized(),
        "timesyncd_synced": TIMESYNCD_FLAG.exists(),
    }
    if data_dir is not None:
        try:
            usage = psutil.disk_usage(str(data_dir))
        except OSError:
            return facts
        facts.update(disk_free=usage.free, disk_total=usage.total)
    return facts


async def _signups(app: web.Application) -> int | None:
    desk = app.get(GUEST_DESK)
    return None if desk is None else await asyncio.to_thread(desk.book.count)


async def gather(app: web.Application) -> BoxFacts:
    """The box's facts now: the loop's reads here, the disk's and the book's in threads."""
    metrics, identity = app[METRICS], app[IDENTITY]
    status_of, restream = app.get(STREAM_STATUS), app.get(RESTREAM)
    streams = metrics.streams
    temperatures = {
        key[0]: value
        for key, value in samples(streams.temperature, "edged_temperature_celsius").items()
    }
    system = await asyncio.to_thread(_system, app.get(DATA_DIR))
    return BoxFacts(
        now=time.time(),
        node=identity.advertised_name or identity.node,
        event=identity.event,
        cameras=cameras(status_of() if status_of is not None else [], metrics),
        spool_bytes=int(_one(streams.spool_bytes, "edged_spool_bytes")),
        min_free_bytes=int(_one(metrics.box.min_free_bytes, "edged_disk_min_free_bytes")),
        cameras_expected=int(_one(metrics.box.cameras_expected, "edged_cameras_expected")),
        temperatures=temperatures,
        restream=tuple(restream.status()) if restream is not None else (),
        signups=await _signups(app),
        **_board(app),
        **_uploads(app, metrics),
        **system,
    )


async def _load_secret(app: web.Application) -> None:
    data_dir = app.get(DATA_DIR)
    if data_dir is not None:
        app[CREW_DOOR].secret = await asyncio.to_thread(
            crew_session.load_or_create_secret, data_dir
        )


def install(app: web.Application) -> None:
    """The routes, the login limiter and the session secret (read from the data dir at
    start-up; a random one for an app without a data dir)."""
    app.router.add_routes(routes)
    app[CREW_DOOR] = CrewDoor()
    app.on_startup.append(_load_secret)
