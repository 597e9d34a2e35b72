"""`edged restream list|on|off`: the running daemon's restream routes from the command line.

The daemon owns the destinations, so the commands ask it over HTTP (the caller passes `call`,
which carries the admin token); what they print shows URLs masked, as the daemon does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

Call = Callable[[str, str], tuple[int, Mapping[str, Any]]]  # (method, path) -> (status, body)


def table(destinations: Sequence[Mapping[str, Any]]) -> str:
    """One line per destination: name, stream, on/off, state, masked URL, and the reason."""
    if not destinations:
        return "no restream destinations ([[restream]] in the config)\n"
    lines = []
    for row in destinations:
        switch = "on" if row["enabled"] else "off"
        reason = f"  ({row['reason']})" if row.get("reason") else ""
        lines.append(
            f"{row['name']:24} {row['stream']:16} {switch:3} {row['state']:10} {row['url']}{reason}"
        )
    return "\n".join(lines) + "\n"


def run(
    call: Call, command: str, name: str | None, out: TextIO, err: TextIO, *, as_json: bool
) -> int:
    """`list`, `on NAME` or `off NAME`; the exit code (1: refused or no such destination)."""
    if command == "list":
        status, body = call("GET", "/api/v1/restream")
        if status != 200:
            err.write(f"edged: restream: {body.get('error', status)}\n")
            return 1
        out.write(json.dumps(body, indent=2) + "\n" if as_json else table(body["destinations"]))
        return 0
    switch = "enable" if command == "on" else "disable"
    status, body = call("POST", f"/api/v1/restream/{name}/{switch}")
    if status != 200:
        err.write(f"edged: restream {command} {name}: {body.get('error', status)}\n")
        return 1
    out.write(json.dumps(body, indent=2) + "\n" if as_json else table([body["destination"]]))
    return 0
