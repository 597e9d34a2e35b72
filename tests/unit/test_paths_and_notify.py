"""Data dir resolution, the admin token file, and the watchdog interval."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edged.errors import StartupError
from edged.notify import watchdog_interval
from edged.paths import load_or_create_token, prepare_data_dir, resolve_data_dir, too_open


def test_data_dir_order() -> None:
    env = {
        "EDGED_DATA_DIR": "/env",
        "STATE_DIRECTORY": "/var/lib/edged:/var/lib/other",
        "XDG_STATE_HOME": "/xdg",
    }
    assert resolve_data_dir("/cli", "/config", env) == Path("/cli")
    assert resolve_data_dir(None, "/config", env) == Path("/config")
    assert resolve_data_dir(None, "", env) == Path("/env")
    del env["EDGED_DATA_DIR"]
    assert resolve_data_dir(None, "", env) == Path("/var/lib/edged")
    del env["STATE_DIRECTORY"]
    assert resolve_data_dir(None, "", env) == Path("/xdg/edged")
    assert resolve_data_dir(None, "", {}) == Path.home() / ".local/state/edged"


def test_data_dir_is_created_private(tmp_path: Path) -> None:
    made = prepare_data_dir(tmp_path / "a" / "b")
    assert made.stat().st_mode & 0o777 == 0o700
    assert list(made.iterdir()) == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o700, False), (0o500, False), (0o755, True), (0o750, True), (0o701, True), (0o40700, False)],
)
def test_too_open(mode: int, expected: bool) -> None:
    assert too_open(mode) is expected


def test_a_data_dir_found_open_is_tightened_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = tmp_path / "data"
    found.mkdir()
    found.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="edged.paths"):
        prepare_data_dir(found)
        prepare_data_dir(found)
    assert found.stat().st_mode & 0o777 == 0o700
    assert [record.getMessage() for record in caplog.records] == [
        f"data dir {found} was mode 0755, open to other users; made it 0700"
    ]


def test_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    token, path = load_or_create_token(tmp_path, "")
    assert path == tmp_path / "admin.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32
    assert load_or_create_token(tmp_path, "") == (token, path)


def test_configured_token_must_be_private_and_long(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(StartupError, match="shorter than 16"):
        load_or_create_token(tmp_path, str(path))
    path.write_text("a-long-enough-token\n")
    assert load_or_create_token(tmp_path, str(path)) == ("a-long-enough-token", path)
    path.chmod(0o640)
    with pytest.raises(StartupError, match="readable by others"):
        load_or_create_token(tmp_path, str(path))
    with pytest.raises(StartupError, match="cannot read admin token file"):
        load_or_create_token(tmp_path, str(tmp_path / "absent"))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=42) == expected
