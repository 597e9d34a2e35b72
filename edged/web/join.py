"""Check-in: `/join` (the form and its confirmation with the exclusive clip), and the crew's
`/api/v1/guests` (export, deletion). No personal data in a log line or a metric label."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from html import escape
from urllib.parse import quote

from aiohttp import web

from edged.guest.campaigns import campaign_of
from edged.guest.clips import SHOW, guest_view
from edged.guest.desk import GuestDesk
from edged.guest.members import MEMBER_CHECK, MEMBER_SECRET, give_cookie
from edged.guest.page import display_title
from edged.guest.signups import (
    HONEYPOT,
    MAX_EMAIL,
    MAX_NAME,
    FormReused,
    Guest,
    Refused,
    export_csv,
    normalize_email,
    parse_signup,
)
from edged.web.context import CLIPS, ClipStore
from edged.web.join_guard import (
    ClientLimiter,
    client_address,
    client_key,
    proxy_addresses,
    same_origin,
)
from edged.web.shell import html_page

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

GUEST_DESK = web.AppKey("guest_desk", GuestDesk)
SIGNUP_LIMITER = web.AppKey("signup_limiter", ClientLimiter)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", frozenset[str])
MAX_FORM = 8192

_STYLE = (
    "body{font:18px/1.4 system-ui,sans-serif;margin:0;padding:1.2em;background:#111;color:#eee}"
    "main{max-width:30em;margin:auto}h1{font-size:1.5em;margin:0 0 .4em}p{color:#bbb}"
    "label{display:block;margin:.9em 0 .3em}input[type=email],input[type=text]{width:100%;"
    "box-sizing:border-box;font:inherit;padding:.6em;border-radius:6px;border:1px solid #555;"
    "background:#222;color:#eee}.consent{display:flex;gap:.6em;align-items:flex-start}"
    ".consent input{width:1.4em;height:1.4em;margin:.1em 0 0;flex:none}"
    "button{margin-top:1.2em;width:100%;font:inherit;font-weight:600;padding:.8em;border:0;"
    "border-radius:6px;color:#fff;background:var(--accent)}.hp{position:absolute;left:-9999px}"
    "video{width:100%;border-radius:8px;background:#000;margin-top:1em}a{color:#eee}"
)


def page(title: str, accent: str, body: str) -> str:
    return html_page(title, f":root{{--accent:{escape(accent)}}}{_STYLE}", f"<main>{body}</main>")


def join_html(event_title: str, accent: str, consent: str, campaign: str, key: str) -> str:
    """The sign-up form; `key` makes a second submit of this form find the first row."""
    body = (
        f"<h1>Join {escape(event_title)}</h1><p>Sign up for the newsletter and unlock the "
        "exclusive clips.</p>"
        '<form method=post action="/join">'
        f'<input type=hidden name=key value="{escape(key)}">'
        f'<input type=hidden name=campaign value="{escape(campaign)}">'
        f"<label for=email>Email</label><input id=email name=email type=email required "
        f"maxlength={MAX_EMAIL} autocomplete=email inputmode=email>"
        f"<label for=name>Name (optional)</label><input id=name name=name type=text "
        f"maxlength={MAX_NAME} autocomplete=name>"
        f"<label class=consent><input type=checkbox name=consent value=yes required>"
        f"<span>{escape(consent)}</span></label>"
        f"<div class=hp aria-hidden=true><label>Website<input name={HONEYPOT} tabindex=-1 "
        "autocomplete=off></label></div>"
        "<button type=submit>Sign up</button></form>"
    )
    return page(f"Join {event_title}", accent, body)


def welcome_html(event_title: str, accent: str, guest: Guest, clip: str | None) -> str:
    """The confirmation: thanks, and the exclusive clip playing at once (muted, inline)."""
    who = f", {escape(guest.name)}" if guest.name else ""
    video = (
        f'<video src="/assets/{escape(quote(clip))}" poster="/posters/{escape(quote(clip))}.jpg"'
        " autoplay muted playsinline controls loop></video>"
        if clip
        else ""
    )
    body = (
        f"<h1>You're in{who}!</h1><p>Thanks for signing up to {escape(event_title)}. "
        f"The exclusive clips are yours on this phone.</p>{video}"
        '<p><a href="/">Back to the event</a></p>'
    )
    return page("You're in", accent, body)


def exclusive_clip(store: ClipStore | None, now: float) -> str | None:
    """The first exclusive clip a member may watch now, or None."""
    if store is None:
        return None
    for asset in store.assets():
        facts = store.facts.get(asset.name)
        if facts.exclusive and guest_view(facts, now, signed_up=True) == SHOW:
            return asset.name
    return None


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    # The form's POST must carry its Origin for the same-origin check: under the site-wide
    # no-referrer policy a browser sends "Origin: null" (and Sec-Fetch-Site only over HTTPS).
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _title(desk: GuestDesk) -> str:
    return display_title(desk.config.title, desk.event)


@routes.get("/join")
async def join_form(request: web.Request) -> web.Response:
    desk = request.app.get(GUEST_DESK)
    if desk is None:
        raise web.HTTPNotFound(text="sign-up is not running on this box")
    campaign = campaign_of(request.query, desk.config.campaigns)
    key = secrets.token_urlsafe(24)
    config = desk.config
    return _html(join_html(_title(desk), config.accent, config.consent_text, campaign, key))


def _refuse(status: int, reason: str) -> web.Response:
    logger.info("sign-up refused (%d): %s", status, reason)
    return web.Response(text=reason, status=status, content_type="text/plain")


@routes.post("/join")
async def join(request: web.Request) -> web.Response:
    desk = request.app.get(GUEST_DESK)
    if desk is None:
        raise web.HTTPNotFound(text="sign-up is not running on this box")
    headers = request.headers
    if not same_origin(request.host, headers.get("Origin"), headers.get("Sec-Fetch-Site")):
        return _refuse(403, "sign up from this box's own page")
    forwarded = headers.getall("X-Forwarded-For", [])
    client = client_key(client_address(request.remote, forwarded, request.app[TRUSTED_PROXIES]))
    if not request.app[SIGNUP_LIMITER].allow(client, time.monotonic()):
        response = _refuse(429, "too many sign-ups from this phone; try again in a minute")
        response.headers["Retry-After"] = "60"
        return response
    if request.content_length is not None and request.content_length > MAX_FORM:
        return _refuse(413, "the form is too large")
    try:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        named = campaign_of({"campaign": fields.get("campaign", "")}, desk.config.campaigns)
        signup = parse_signup(fields, named)
    except Refused as error:
        return _refuse(400, str(error))
    except ValueError:  # a body aiohttp cannot read as a form
        return _refuse(400, "send the form as application/x-www-form-urlencoded")
    try:
        guest, _ = await desk.sign_up(signup)
    except FormReused as error:  # its key signed up another email: never drop this one silently
        return _refuse(409, str(error))
    clip = exclusive_clip(request.app.get(CLIPS), time.time())
    # Greeted by the name given now: a known email's stored name is not shown to whoever typed it.
    shown = dataclasses.replace(guest, name=signup.name)
    response = _html(welcome_html(_title(desk), desk.config.accent, shown, clip))
    give_cookie(response, request.app[MEMBER_SECRET], guest.signup_id)
    return response


def _crew(request: web.Request) -> GuestDesk:
    """The desk, for the crew's calls (the token: edged/web/auth.py CREW_READS and writes)."""
    desk = request.app.get(GUEST_DESK)
    if desk is None:
        raise web.HTTPServiceUnavailable(
            text='{"error": "sign-up is not running"}', content_type="application/json"
        )
    return desk


@routes.get("/api/v1/guests")
async def list_guests(request: web.Request) -> web.Response:
    guests = await _crew(request).guests()
    if request.query.get("format") == "csv":
        response = web.Response(text=export_csv(guests), content_type="text/csv")
    else:
        response = web.json_response({"guests": [guest.as_json() for guest in guests]})
    response.headers["Cache-Control"] = "no-store"  # guests' personal data: kept by no cache
    return response


WAITING_NOTE = (
    "removed from the box; this guest was sent upstream before, and no upstream is configured "
    "now: the deletion note waits and goes once one is"
)


@routes.delete("/api/v1/guests/{email}")
async def delete_guest(request: web.Request) -> web.Response:
    desk = _crew(request)
    try:
        email = normalize_email(request.match_info["email"])
    except Refused as error:
        return web.json_response({"error": str(error)}, status=400)
    try:
        removed = await desk.delete(email)
    except Exception:  # not to last_resort, whose line would hold the path: the address
        logger.exception("guest deletion failed")
        return web.json_response({"error": "internal error; see the edged log"}, status=500)
    if not removed.rows:
        return web.json_response({"error": "no such guest"}, status=404)
    if removed.notes and not desk.syncing:  # never claim what is not done
        return web.json_response({"deleted": removed.rows, "upstream": WAITING_NOTE})
    return web.Response(status=204)


def install(app: web.Application, desk: GuestDesk) -> None:
    """Put the desk, its cookie secret and check, and the sign-up limit where the routes (and
    `signed_up`) find them."""
    app[GUEST_DESK] = desk
    app[MEMBER_CHECK] = desk.is_member
    app[SIGNUP_LIMITER] = ClientLimiter()
    app[TRUSTED_PROXIES] = proxy_addresses(desk.config.trusted_proxies)
    app[MEMBER_SECRET] = desk.secret
