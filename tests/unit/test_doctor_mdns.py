"""`edged doctor`'s mDNS line names only what the running daemon advertises (#12 item 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edged.datalock import LOCK_NAME
from edged.discovery import Advertised, write_advertised
from edged.doctor import OK, WARN, advertised_by_running_daemon, mdns_check

RENAMED = Advertised(name="twin-2", requested="twin", port=8080, pid=42)


def test_renamed_box_answering_is_ok_under_its_advertised_name() -> None:
    check = mdns_check(
        enabled=True, requested="twin", advertised=RENAMED, answering={"twin", "twin-2"}
    )
    assert check.status == OK
    assert check.detail == (
        "twin-2.local advertised as _edged._tcp.local. (twin.local is taken on this LAN)"
    )


def test_another_box_with_the_node_name_is_not_this_one() -> None:
    """The old check said `twin.local advertised` whenever any `twin` or `twin-*` answered."""
    check = mdns_check(enabled=True, requested="twin", advertised=None, answering={"twin"})
    assert check.status == WARN
    assert "not running" in check.detail and "twin.local advertised" not in check.detail
    assert check.advice
    silent = mdns_check(enabled=True, requested="twin", advertised=RENAMED, answering={"twin"})
    assert silent.status == WARN
    assert silent.detail.startswith("edged advertises twin-2.local")
    assert "did not answer" in silent.detail and silent.advice


def test_mdns_off() -> None:
    check = mdns_check(enabled=False, requested="twin", advertised=None, answering=set())
    assert check.status == WARN
    assert "[mdns] enabled = false" in check.detail and check.advice


def test_the_record_counts_only_while_its_daemon_holds_the_data_dir(tmp_path: Path) -> None:
    mine = Advertised(name="twin-2", requested="twin", port=8080, pid=os.getpid())
    write_advertised(tmp_path, mine)
    assert advertised_by_running_daemon(tmp_path) is None  # no lock file: no daemon
    (tmp_path / LOCK_NAME).write_text(f"{os.getpid()}\n")
    assert advertised_by_running_daemon(tmp_path) == mine
    (tmp_path / LOCK_NAME).write_text("1\n")  # the data dir is another process's now
    assert advertised_by_running_daemon(tmp_path) is None

    # A SIGKILLed daemon: its record and its lock file's PID stay, the process does not.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(gone.stdout)
    write_advertised(tmp_path, Advertised(name="twin-2", requested="twin", port=8080, pid=pid))
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n")
    assert advertised_by_running_daemon(tmp_path) is None
