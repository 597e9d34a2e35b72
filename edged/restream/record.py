"""The restream destinations' state as the running daemon last saw it, in the data dir, for
`edged doctor` (a command, not the daemon). Masked URLs only: the record never holds a key.
Blocking: the destinations' threads write it, doctor reads it."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edged.fileio import write_atomically

logger = logging.getLogger(__name__)

RECORD_FILE = "restream.json"


class StateRecord:
    """Written whenever a destination's state changes (from its thread); a write that fails
    (a full disk) is logged once and costs nothing else."""

    def __init__(self, data_dir: Path, statuses: Callable[[], Sequence[dict[str, Any]]]) -> None:
        self.path = data_dir / RECORD_FILE
        self._statuses = statuses
        self._lock = threading.Lock()
        self._failed = False
        self._closed = False  # forgotten: a destination's late change writes nothing

    def save(self) -> None:
        with self._lock:
            if self._closed:
                return
            document = {"pid": os.getpid(), "destinations": list(self._statuses())}
            try:
                data = (json.dumps(document, indent=1) + "\n").encode()
                write_atomically(self.path, data, 0o600)
            except OSError as error:
                if not self._failed:
                    logger.warning("restream: cannot write %s: %s", self.path, error.strerror)
                self._failed = True

    def forget(self) -> None:
        """Delete the record; no save writes it again (the daemon stops)."""
        with self._lock:
            self._closed = True
            self.path.unlink(missing_ok=True)


def read_record(data_dir: Path) -> tuple[int, dict[str, dict[str, Any]]] | None:
    """(the writer's pid, each destination's status by name), or None when there is no record
    or it is not one; OSError when it cannot be read (doctor run as another user)."""
    try:
        document = json.loads((data_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if not isinstance(document, dict) or type(document.get("pid")) is not int:
        return None
    rows = document.get("destinations")
    if not isinstance(rows, list):
        return None
    found = {
        row["name"]: row
        for row in rows
        if isinstance(row, dict) and isinstance(row.get("name"), str)
    }
    return document["pid"], found
