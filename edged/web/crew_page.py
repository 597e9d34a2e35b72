"""The crew screen's two pages: the login form and the screen (a phone's, 390x844 first), which
draws itself every few seconds from /crew/state. Small, inline, no framework; text goes in as
text (textContent), never as markup."""

from __future__ import annotations

from html import escape

from edged.web.shell import html_page

STATE_PATH = "/crew/state"
LOGIN_PATH = "/crew/login"
LOGOUT_PATH = "/crew/logout"
REFRESH_MS = 3000
# The page's own bytes (the screen, not its thumbnails): checked by the tests.
PAGE_BUDGET = 12 * 1024

_STYLE = (
    "body{font:15px/1.35 system-ui,sans-serif;margin:0;background:#111;color:#eee}"
    "header{display:flex;align-items:center;gap:8px;padding:10px 12px;background:#1b1b1b}"
    "header div{flex:1;min-width:0}h1{font-size:1.15em;margin:0;overflow-wrap:anywhere}"
    "small,.m{color:#999}main{max-width:40em;margin:auto;padding:10px 12px}"
    "h2{font-size:.8em;text-transform:uppercase;letter-spacing:.06em;color:#999;margin:14px 0 6px}"
    "button{font:inherit;font-weight:600;padding:.55em .9em;border:0;border-radius:6px;"
    "background:#333;color:#eee}form{margin:0}"
    ".w{border-left:4px solid #e9a400;background:#231d0c;padding:7px 10px;margin:0 0 6px;"
    "border-radius:4px}.w.fail{border-color:#e4003a;background:#2a0f15}.w b{display:block}"
    ".w p{margin:2px 0;color:#ccc;font-size:.9em;overflow-wrap:anywhere}.w .a{color:#fff}"
    ".cam{display:flex;gap:10px;background:#1b1b1b;border-radius:8px;padding:8px;margin:0 0 8px}"
    ".cam img{width:128px;height:72px;object-fit:cover;border-radius:4px;background:#000;flex:none}"
    ".cam div{min-width:0;flex:1}.cam b{display:block;overflow-wrap:anywhere}"
    ".bar{height:6px;background:#333;border-radius:3px;margin-top:4px;overflow:hidden}"
    ".bar i{display:block;height:100%;background:#2bb24c}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:4px 12px;margin:0}dt{color:#999}"
    "dd{margin:0;overflow-wrap:anywhere}.warn{color:#f5c542}.fail{color:#ff5c7a}"
    "#ok{color:#2bb24c;margin:0}"
)

# Every REFRESH_MS (and when the page is shown again) the state JSON, drawn anew (a camera's
# thumbnail element kept: the last picture stays until the next has loaded); a 401 (the session
# ended) shows the login form.
_SCRIPT = (
    "(()=>{const $=i=>document.getElementById(i),e=(t,c,x)=>{const n=document.createElement(t);"
    "if(c)n.className=c;if(x!=null)n.textContent=x;return n};"
    "const warn=w=>{const d=e('div','w '+w.level);d.append(e('b','',w.title),e('p','',w.detail));"
    "if(w.advice)d.append(e('p','a','\\u2192 '+w.advice));return d};"
    "const im={},cam=(c,t)=>{const d=e('div','cam'),s=e('div'),b=e('div','bar'),l=e('i');"
    "const i=im[c.stream]||(im[c.stream]=e('img')),u=c.poster+'?t='+t;"
    "if(i.getAttribute('src')!==u)i.src=u;i.alt='';l.style.width=(c.level*100)+'%';b.append(l);"
    "s.append(e('b','',c.stream),e('span','fps'+(c.ok?'':' fail'),c.ok?c.fps:c.state),"
    "e('div','m',[c.size,c.drops+' dropped',c.recording?'recording':'not recording']"
    ".filter(Boolean).join(' \\u00b7 ')),e('div','m','sound: '+c.audio));if(c.meter)s.append(b);"
    "d.append(i,s);d.dataset.stream=c.stream;return d};"
    "const lines=(id,rows)=>{const l=$(id);l.replaceChildren();for(const r of rows)"
    "l.append(e('dt','',r.label),e('dd',r.status.toLowerCase(),r.value))};"
    "const draw=s=>{const t=Math.floor(s.at/3);$('node').textContent=s.node;"
    "$('ev').textContent='event '+s.event+' \\u00b7 '+new Date(s.at*1000).toLocaleTimeString();"
    "$('ws').replaceChildren(...s.warnings.map(warn));$('ok').hidden=s.warnings.length>0;"
    "$('cams').replaceChildren(...s.cameras.map(c=>cam(c,t)));lines('box',s.lines);"
    "lines('rs',s.restream);$('rsh').hidden=!s.restream.length;"
    "document.body.dataset.at=s.at};"
    "const r=async()=>{try{const a=await fetch('$state',{cache:'no-store'});"
    "if(a.status===401){location.reload();return}if(a.ok)draw(await a.json())}catch(x){}};"
    "r();setInterval(()=>{if(!document.hidden)r()},$ms);"
    "document.addEventListener('visibilitychange',()=>{if(!document.hidden)r()});})();"
)


def screen_html(node: str) -> str:
    """The crew screen's frame; the script fills it from STATE_PATH at once, then every few
    seconds."""
    script = _SCRIPT.replace("$state", STATE_PATH).replace("$ms", str(REFRESH_MS))
    body = (
        f"<header><div><h1 id=node>{escape(node)}</h1><small id=ev></small></div>"
        f"<form method=post action={LOGOUT_PATH}><button type=submit>Log out</button></form>"
        "</header><main><h2>Warnings</h2><div id=ws></div><p id=ok hidden>All good.</p>"
        "<h2>Cameras</h2><div id=cams></div><h2>Box</h2><dl id=box></dl>"
        "<h2 id=rsh hidden>Restream</h2><dl id=rs></dl></main>"
        f"<script>{script}</script>"
    )
    return html_page(f"Crew: {node}", _STYLE, body)


_LOGIN_STYLE = (
    "body{font:17px/1.4 system-ui,sans-serif;margin:0;padding:1.2em;background:#111;color:#eee}"
    "main{max-width:24em;margin:auto}h1{font-size:1.4em}p{color:#bbb}"
    "input{width:100%;box-sizing:border-box;font:inherit;padding:.6em;border-radius:6px;"
    "border:1px solid #555;background:#222;color:#eee}button{margin-top:1em;width:100%;"
    "font:inherit;font-weight:600;padding:.75em;border:0;border-radius:6px;background:#e4003a;"
    "color:#fff}.r{color:#ff5c7a}"
)


def login_html(node: str, reason: str = "") -> str:
    """The login form: the admin token (in the data dir's admin.token), and why the last try
    was refused."""
    refused = f"<p class=r role=alert>{escape(reason)}</p>" if reason else ""
    body = (
        f"<main><h1>Crew: {escape(node)}</h1>{refused}"
        f"<form method=post action={LOGIN_PATH}><label for=token>Admin token</label>"
        "<input id=token name=token type=password required autocomplete=current-password "
        "autocapitalize=off spellcheck=false><button type=submit>Log in</button></form>"
        "<p>The token is in the box's data dir: <code>admin.token</code>.</p></main>"
    )
    return html_page(f"Crew: {node}", _LOGIN_STYLE, body)
