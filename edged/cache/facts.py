"""The facts of the clips on the box (title, description, exclusive, release window) in one
small JSON file beside the asset index: mode 0600, atomic writes, read again at start.

Two layers of fields per clip: the manifest's (replaced whole each time the manifest is read)
and the crew's (`PATCH /api/v1/assets/<name>`), the crew's over the manifest's; a clip with
neither has `default_facts`. Both layers are kept, so a box that starts without its upstream
still holds back a staged clip. Reads never block (an immutable snapshot); writes block (fsync):
call them in a thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edged.fileio import write_atomically
from edged.guest.clips import ClipFacts, default_facts, facts_from_fields

logger = logging.getLogger(__name__)

FACTS = "facts.json"
Fields = Mapping[str, Any]  # a clip's given fields, as JSON holds them (times in RFC 3339)


def effective(name: str, manifest: Fields | None, patched: Fields | None) -> ClipFacts:
    """The facts of `name`: the crew's fields over the manifest's over the defaults. When the
    two no longer agree (a window the manifest moved), the crew's fields alone count."""
    try:
        return facts_from_fields(name, {**(manifest or {}), **(patched or {})})
    except ValueError:
        pass
    try:
        return facts_from_fields(name, patched or {})
    except ValueError:  # a file edited by hand: never a crash, the defaults
        return default_facts(name)


class FactsStore:
    """Clip facts under `<root>/facts.json`."""

    def __init__(self, root: Path) -> None:
        self.path = root / FACTS
        self._writer = threading.Lock()
        self._manifest: dict[str, dict[str, Any]] = {}
        self._patched: dict[str, dict[str, Any]] = {}
        self._facts: Mapping[str, ClipFacts] = MappingProxyType({})
        self._load()

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            manifest, patched = document.get("manifest", {}), document.get("patched", {})
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as error:
            logger.error("clip facts %s unreadable (%s): starting without", self.path, error)
            return
        self._manifest = _layer(manifest)
        self._patched = _layer(patched)
        self._publish()

    def _publish(self) -> None:
        names = set(self._manifest) | set(self._patched)
        self._facts = MappingProxyType(
            {n: effective(n, self._manifest.get(n), self._patched.get(n)) for n in names}
        )

    def _save(self) -> None:
        document = {"manifest": self._manifest, "patched": self._patched}
        write_atomically(self.path, json.dumps(document, indent=1).encode(), mode=0o600)

    # -- reading (never blocks) ----------------------------------------------------------------

    def get(self, name: str) -> ClipFacts:
        """The facts of clip `name` (the defaults for a clip nobody described)."""
        facts = self._facts.get(name)
        return facts if facts is not None else default_facts(name)

    # -- writing (blocks: call it in a thread) -------------------------------------------------

    def patch(self, name: str, fields: Fields) -> ClipFacts:
        """The crew's fields for `name` changed; ValueError with a short reason when they are
        not facts (nothing changes then)."""
        with self._writer:
            patched = {**self._patched.get(name, {}), **fields}
            facts = facts_from_fields(name, {**self._manifest.get(name, {}), **patched})
            self._patched[name] = patched
            self._publish()
            self._save()
            return facts

    def forget(self, name: str) -> None:
        """The crew's fields for `name` go (the clip was deleted through the API)."""
        with self._writer:
            if self._patched.pop(name, None) is not None:
                self._publish()
                self._save()

    def from_manifest(self, layer: Mapping[str, Fields]) -> None:
        """The manifest's fields per clip, as it now says (entries without any field: none)."""
        wanted = {name: dict(fields) for name, fields in layer.items() if fields}
        with self._writer:
            if wanted == self._manifest:
                return
            self._manifest = wanted
            self._publish()
            self._save()


def _layer(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        return {}
    return {str(name): dict(fields) for name, fields in value.items() if isinstance(fields, dict)}
