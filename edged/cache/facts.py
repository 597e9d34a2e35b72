"""The facts of the clips on the box (title, description, exclusive, release window) in one
small JSON file beside the asset index: mode 0600, atomic writes, read again at start.

Two layers of fields per clip: the manifest's (replaced whole each time the manifest is read)
and the crew's (`PATCH /api/v1/assets/<name>`), the crew's over the manifest's; a clip with
neither has `default_facts`. Doubt fails closed: a clip whose layers disagree, or whose manifest
entry was rejected and that had no facts from it before, is withheld from guests (one warning).
A clip the manifest stops listing (removed, or an entry whose name cannot be read) keeps its
last manifest fields while its file is on the box. An unreadable file is set aside as
`facts.json.bad`, and every clip on the box then is withheld until a manifest read lists it or
the crew PATCHes it. Both layers are kept, so a box that starts without its upstream still holds
back a staged clip.
Reads never block (an immutable snapshot); writes block (fsync): call them in a thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edged.fileio import write_atomically
from edged.guest.clips import ClipFacts, default_facts, facts_from_fields

logger = logging.getLogger(__name__)

FACTS = "facts.json"
SET_ASIDE = "facts.json.bad"  # an unreadable facts file, kept for the crew
LOST = "its facts were lost (facts.json unreadable)"
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
    previous: Mapping[str, Fields],
    listed: Mapping[str, Fields],
    rejected: Mapping[str, str],
    on_box: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """The manifest's layer after a read: the fields of each listed clip (none: no entry); a
    clip whose entry was rejected keeps the fields it had (its name then stays in `rejected`;
    without fields it is withheld); so does a clip on the box the manifest no longer lists (its
    entry removed, or rejected with no name to read): a staged clip never turns public."""
    layer = {
        name: dict(fields) for name, fields in listed.items() if fields and name not in rejected
    }
    for name, fields in previous.items():
        if fields and (name in rejected or (name not in listed and name in on_box)):
            layer[name] = dict(fields)
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
        self._departed: set[str] = set()  # kept manifest fields of clips it no longer lists
        self._lost: set[str] = set()  # clips on the box when the file was lost: withheld
        self._unreadable = False  # the file could not be read at start (set_aside)
        self._facts: Mapping[str, ClipFacts] = MappingProxyType({})
        self._load()

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            self._manifest = _layer(document, "manifest")
            self._patched = _layer(document, "patched")
            self._rejected = {name: str(why) for name, why in _table(document, "rejected").items()}
            self._departed = set(_names(document, "departed")) & set(self._manifest)
            self._lost = set(_names(document, "lost"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeError are ValueErrors
            self._manifest, self._patched, self._rejected = {}, {}, {}
            self._departed, self._lost = set(), set()
            self._set_aside(error)
            return
        self._publish()

    def _set_aside(self, error: Exception) -> None:
        """An unreadable file: kept as SET_ASIDE; the clips on the box are withheld (lost_on)."""
        with contextlib.suppress(OSError):  # then it is overwritten at the next save
            self.path.replace(self.path.with_name(SET_ASIDE))
        self._unreadable = True
        logger.error(
            "clip facts %s unreadable (%s): set aside as %s; the clips on the box are withheld "
            "until the manifest lists them or the crew sets their facts (PATCH)",
            self.path.name,
            error,
            SET_ASIDE,
        )

    def lost_on(self, names: Iterable[str]) -> None:
        """The clips on the box at start (blocking): when the file was unreadable, each is
        withheld until a manifest read lists it or the crew PATCHes it (kept across restarts)."""
        if not self._unreadable:
            return
        with self._writer:
            self._unreadable = False
            self._lost = set(names)
            self._publish()
            self._save()

    def _publish(self) -> None:
        names = set(self._manifest) | set(self._patched) | set(self._rejected) | self._lost
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
        if name in self._lost:
            return withheld(name, None, "")[0], LOST
        if name in self._rejected and name not in self._manifest:
            return withheld(name, self._patched.get(name), self._rejected[name])
        return effective(name, self._manifest.get(name), self._patched.get(name))

    def _save(self) -> None:
        document = {
            "manifest": self._manifest,
            "patched": self._patched,
            "rejected": self._rejected,
            "departed": sorted(self._departed),
            "lost": sorted(self._lost),
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
            self._lost.discard(name)
            self._publish()
            self._save()
            return self.get(name)

    def forget(self, name: str) -> None:
        """The crew's fields for `name` go (the clip was deleted through the API)."""
        with self._writer:
            if self._patched.pop(name, None) is not None:
                self._publish()
                self._save()

    def gone(self, names: Iterable[str]) -> None:
        """Clips that left the box (evicted, removed): the manifest fields kept only because
        they were on the box go, and so does their lost mark (blocking)."""
        names = set(names)
        with self._writer:
            departed, lost = self._departed & names, self._lost & names
            if not departed and not lost:
                return
            for name in departed:
                self._manifest.pop(name, None)
            self._departed -= departed
            self._lost -= lost
            self._publish()
            self._save()

    def from_manifest(
        self,
        listed: Mapping[str, Fields],
        rejected: Mapping[str, str] | None = None,
        on_box: Collection[str] = (),
    ) -> None:
        """The manifest's fields per clip, as it now says (entries without any field: none);
        `rejected`: the clips whose entry was refused, and why; `on_box`: the clips here, whose
        fields stay when the manifest no longer lists them (manifest_layer)."""
        rejected = dict(rejected or {})
        with self._writer:
            wanted = manifest_layer(self._manifest, listed, rejected, on_box)
            departed = {name for name in wanted if name not in listed and name not in rejected}
            lost = self._lost - set(listed)
            if (wanted, rejected, departed, lost) == (
                self._manifest,
                self._rejected,
                self._departed,
                self._lost,
            ):
                return
            for name in sorted(departed - self._departed):
                logger.info(
                    "clip %s keeps its facts while on the box: the manifest no longer lists it",
                    name,
                )
            for name in sorted(set(rejected) - set(self._rejected)):
                if name in wanted:
                    logger.warning(
                        "clip %s keeps its facts: its manifest entry was rejected (%s)",
                        name,
                        rejected[name],
                    )
            self._manifest, self._rejected = wanted, rejected
            self._departed, self._lost = departed, lost
            self._publish()
            self._save()


def _table(document: object, key: str) -> dict[str, Any]:
    """`document[key]`, a JSON object (none: empty); ValueError when it is anything else."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} is not an object")
    return value


def _layer(document: object, key: str) -> dict[str, dict[str, Any]]:
    layer = _table(document, key)
    if not all(isinstance(fields, dict) for fields in layer.values()):
        raise ValueError(f"{key} holds a clip whose fields are not an object")
    return {str(name): dict(fields) for name, fields in layer.items()}


def _names(document: object, key: str) -> list[str]:
    value = document.get(key, []) if isinstance(document, dict) else None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"{key} is not a list of names")
    return value
