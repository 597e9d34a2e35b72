"""The fleet dashboard's shape (#19): chosen by event and node, never by instance; a fleet row of
stat panels above a row repeated per box; one unit per panel; thresholds where a colour tells."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((REPO / "configs" / "grafana" / "edged.json").read_text())
PANELS: list[dict[str, Any]] = DASHBOARD["panels"]
# A metric's unit family, from its name; a panel draws one family only.
FAMILIES = (
    (r"_celsius$", "celsius"),
    (r"(_bytes|_bytes_total)$", "bytes"),
    (r"_bytes_per_second$", "bytes/s"),
    (r"_seconds(_bucket)?$", "seconds"),
    (r"_ratio$", "ratio"),
)


def family(metric: str) -> str:
    return next((name for pattern, name in FAMILIES if re.search(pattern, metric)), "count")


def test_variables_are_event_and_node_not_instance() -> None:
    variables = DASHBOARD["templating"]["list"]
    assert [variable["name"] for variable in variables] == ["datasource", "event", "node"]
    assert "edged_build_info" in variables[1]["query"]["query"]
    assert 'event=~"$event"' in variables[2]["query"]["query"]
    text = json.dumps(PANELS)
    assert "instance" not in text


def test_every_query_is_filtered_by_node_and_event() -> None:
    for panel in PANELS:
        for target in panel.get("targets", []):
            for selector in re.findall(r"\b(?:edged_\w+|up)\{([^}]*)\}", target["expr"]):
                assert 'node=~"$node"' in selector and 'event=~"$event"' in selector, target


def test_a_fleet_row_of_stats_above_a_row_per_box() -> None:
    rows = [index for index, panel in enumerate(PANELS) if panel["type"] == "row"]
    assert len(rows) == 2 and rows[0] == 0
    fleet = PANELS[1 : rows[1]]
    assert {panel["title"] for panel in fleet} == {
        "Boxes up",
        "Streams up",
        "Recording",
        "Upload backlog",
        "Hottest box",
        "Sign-ups",
    }
    assert all(panel["type"] == "stat" for panel in fleet)
    assert PANELS[rows[1]].get("repeat") == "node"
    for panel in fleet:
        assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"], panel["title"]


def test_one_unit_per_panel() -> None:
    for panel in PANELS:
        if panel["type"] == "row":
            continue
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), panel["title"]
        assert not any(
            prop["id"] == "unit"
            for o in panel["fieldConfig"]["overrides"]
            for prop in o["properties"]
        ), panel["title"]
        metrics = {m for t in panel["targets"] for m in re.findall(r"\b(edged_\w+)\{", t["expr"])}
        families = {family(metric) for metric in metrics}
        assert len(families) <= 1, f"{panel['title']} mixes {families}"
    titles = {panel["title"] for panel in PANELS}
    # The three panels that mixed units are split.
    assert not {"CPU and throttling", "Disk free", "Oldest pending upload and upstream"} & titles
    assert {"CPU", "Thermal step-down level", "Spool", "Upstream reachable"} <= titles


def test_cache_hits_first_frames_and_the_pi_flags_are_drawn() -> None:
    by_title = {panel["title"]: panel for panel in PANELS}
    assert by_title["Cache hit ratio"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    first_frame = by_title["First frame on guests' phones"]
    assert first_frame["type"] == "heatmap"
    assert "edged_player_first_frame_seconds_bucket" in first_frame["targets"][0]["expr"]
    assert "edged_pi_throttled" in by_title["Raspberry Pi throttle flags"]["targets"][0]["expr"]
