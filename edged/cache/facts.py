"""The facts of the clips on the box (title, description, exclusive, release window) in one
small JSON file beside the asset index: mode 0600, atomic writes, read again at start.

Two layers of fields per clip: the manifest's (replaced whole each time the manifest is read)
and the crew's (`PATCH /api/v1/assets/<name>`), the crew's over the manifest's; a clip with
neither has `default_facts`. Doubt fails closed: a clip whose layers disagree, or whose manifest
entry was rejected and that had no facts from it before, is withheld from guests (one warning).
Both layers are kept, so a box that starts without its upstream still holds back a staged clip.
Reads never block (an immutable snapshot); writes block (fsync): call them in a thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edged.fileio import write_atomically
from edged.guest.clips import ClipFacts, default_facts, facts_from_fields

logger = logging.getLogger(__name__)

FACTS = "facts.json"
Fields = Mapping[str, Any]  # a clip's given fields, as JSON holds them (times in RFC 3339)
_SHOWN = ("title", "description", "exclusive")  # what a withheld clip still shows the crew


def effective(name: str, manifest: Fields | None, patched: Fields | None) -> tuple[ClipFacts, str]:
    """The facts of `name`, the crew's fields over the manifest's over the defaults, and ""; or,
    when the two no longer agree (a window the manifest moved, a file edited by hand), the clip
    withheld from guests and why: fail closed, never the defaults (public, not exclusive)."""
    fields = {**(manifest or {}), **(patched or {})}
    try:
        return facts_from_fields(name, fields), ""
    except ValueError as error:
        problem = str(error)
    try:  # the crew's list still shows what it can: title, description, exclusive
        facts = facts_from_fields(name, {k: v for k, v in fields.items() if k in _SHOWN})
    except ValueError:
        facts = default_facts(name)
    return replace(facts, withheld=True), problem


def withheld(name: str, patched: Fields | None, rejected: str) -> tuple[ClipFacts, str]:
    """A clip whose manifest entry was rejected and that had no facts from the manifest before:
    held back from guests (it may be the staged finale with a typo), and why."""
    facts, _ = effective(name, None, patched)
    return replace(facts, withheld=True), f"its manifest entry was rejected ({rejected})"


def manifest_layer(
    previous: Mapping[str, Fields], listed: Mapping[str, Fields], rejected: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The manifest's layer after a read: the fields of each listed clip (none: no entry); a
    clip whose entry was rejected keeps the fields it had (its name then stays in `rejected`;
    without fields it is withheld)."""
    layer = {
        name: dict(fields) for name, fields in listed.items() if fields and name not in rejected
    }
    for name in rejected:
        if previous.get(name):
            layer[name] = dict(previous[name])
    return layer


class FactsStore:
    """Clip facts under `<root>/facts.json`."""

    def __init__(self, root: Path) -> None:
        self.path = root / FACTS
        self._writer = threading.Lock()
        self._manifest: dict[str, dict[str, Any]] = {}
        self._patched: dict[str, dict[str, Any]] = {}
        self._rejected: dict[str, str] = {}  # name -> why its manifest entry was rejected
        self._problems: dict[str, str] = {}  # name -> why it is withheld (warned once)
        self._facts: Mapping[str, ClipFacts] = MappingProxyType({})
        self._load()

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            manifest, patched = document.get("manifest", {}), document.get("patched", {})
            rejected = document.get("rejected", {})
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as error:
            logger.error("clip facts %s unreadable (%s): starting without", self.path, error)
            return
        self._manifest = _layer(manifest)
        self._patched = _layer(patched)
        if isinstance(rejected, dict):
            self._rejected = {str(name): str(why) for name, why in rejected.items()}
        self._publish()

    def _publish(self) -> None:
        names = set(self._manifest) | set(self._patched) | set(self._rejected)
        resolved = {name: self._resolve(name) for name in names}
        problems = {name: problem for name, (_, problem) in resolved.items() if problem}
        for name, problem in sorted(problems.items()):
            if self._problems.get(name) != problem:
                logger.warning(
                    "clip %s withheld from guests: %s; correct the manifest, or the crew's "
                    "fields (PATCH /api/v1/assets/%s)",
                    name,
                    problem,
                    name,
                )
        self._problems = problems
        self._facts = MappingProxyType({name: facts for name, (facts, _) in resolved.items()})

    def _resolve(self, name: str) -> tuple[ClipFacts, str]:
        if name in self._rejected and name not in self._manifest:
            return withheld(name, self._patched.get(name), self._rejected[name])
        return effective(name, self._manifest.get(name), self._patched.get(name))

    def _save(self) -> None:
        document = {
            "manifest": self._manifest,
            "patched": self._patched,
            "rejected": self._rejected,
        }
        write_atomically(self.path, json.dumps(document, indent=1).encode(), mode=0o600)

    # -- reading (never blocks) ----------------------------------------------------------------

    def get(self, name: str) -> ClipFacts:
        """The facts of clip `name` (the defaults for a clip nobody described)."""
        facts = self._facts.get(name)
        return facts if facts is not None else default_facts(name)

    # -- writing (blocks: call it in a thread) -------------------------------------------------

    def patch(self, name: str, fields: Fields) -> ClipFacts:
        """The crew's fields for `name` changed; ValueError with a short reason when they are
        not facts (nothing changes then). The facts guests now get (withheld while its
        manifest entry is rejected)."""
        with self._writer:
            patched = {**self._patched.get(name, {}), **fields}
            facts_from_fields(name, {**self._manifest.get(name, {}), **patched})
            self._patched[name] = patched
            self._publish()
            self._save()
            return self.get(name)

    def forget(self, name: str) -> None:
        """The crew's fields for `name` go (the clip was deleted through the API)."""
        with self._writer:
            if self._patched.pop(name, None) is not None:
                self._publish()
                self._save()

    def from_manifest(
        self, listed: Mapping[str, Fields], rejected: Mapping[str, str] | None = None
    ) -> None:
        """The manifest's fields per clip, as it now says (entries without any field: none);
        `rejected`: the clips whose entry was refused, and why (manifest_layer)."""
        rejected = dict(rejected or {})
        with self._writer:
            wanted = manifest_layer(self._manifest, listed, rejected)
            if wanted == self._manifest and rejected == self._rejected:
                return
            for name in sorted(set(rejected) - set(self._rejected)):
                if name in wanted:
                    logger.warning(
                        "clip %s keeps its facts: its manifest entry was rejected (%s)",
                        name,
                        rejected[name],
                    )
            self._manifest, self._rejected = wanted, rejected
            self._publish()
            self._save()


def _layer(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        return {}
    return {str(name): dict(fields) for name, fields in value.items() if isinstance(fields, dict)}
