"""The clip worker: `python -m edged.clips.worker` cuts one clip, or finishes one (prepares it
for the cache and signs it), and exits.

A process of its own, so the cut runs at the lowest CPU priority (nice 19 and SCHED_IDLE are per
process on Linux) with one thread for decoding, filtering and encoding, and can be paused
(SIGSTOP) and resumed (SIGCONT) as a whole. It dies with the daemon (PR_SET_PDEATHSIG): a daemon
killed mid-job leaves no orphan writing. The job's spec comes as JSON on stdin; progress, then the
result or the reason it failed, go to stdout as JSON lines. The clip is written under a hidden
temporary name beside its target and renamed to it only when whole and synced: nothing
half-written is ever under the target's name.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psutil

PR_SET_PDEATHSIG = 1
PROGRESS_INTERVAL = 0.25  # seconds between progress lines
NICE = 19


@dataclass(frozen=True)
class CutSpec:
    """One cut: the variant, its sources (path, wall-clock start), the range and the target."""

    variant: str  # "original" or "vertical"
    sources: tuple[tuple[str, float], ...]
    start: float
    end: float
    target: str
    mode: str = "fill"
    x_offset: int | None = None
    encoders: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CutSpec:
        document = json.loads(text)
        document["sources"] = tuple((str(p), float(s)) for p, s in document["sources"])
        document["encoders"] = tuple(document.get("encoders", ()))
        return cls(**document)


@dataclass(frozen=True)
class FinishSpec:
    """The end of a job, at the same low priority as its cut: the cut made ready for phones (the
    clip cache's fast start), then signed last, so the file the cache serves, the upload queue
    sends and the sidecar describes is the signed one. `facts`: the clip's sidecar facts (its
    claim); `cert_file`/`key_file`: the box's identity, empty for no signature."""

    source: str  # the cut, removed once finished
    target: str
    facts: dict[str, Any]
    encoders: tuple[str, ...] = ()
    cert_file: str = ""
    key_file: str = ""
    step: str = "finish"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def part_name(target: Path, pid: int) -> Path:
    """The hidden name a clip is written under until it is whole."""
    return target.with_name(f".{target.name}.{pid}.part")


def lower_priority() -> None:
    """Nice 19 and SCHED_IDLE (the CPU only when nothing else wants it), idle I/O priority, and
    die with the parent (Linux; elsewhere the nice alone)."""
    os.nice(NICE - os.nice(0))
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError, AttributeError):
        psutil.Process().ionice(psutil.IOPRIO_CLASS_IDLE)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file size limit is an error, not a kill
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Reporter:
    """JSON lines on `out`: progress at most every PROGRESS_INTERVAL, then the outcome."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._next = 0.0

    def progress(self, fraction: float) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_INTERVAL
            self.line({"progress": round(fraction, 4)})

    def line(self, document: dict[str, Any]) -> None:
        self._out.write(json.dumps(document) + "\n")
        self._out.flush()


def _sync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def cut(spec: CutSpec, reporter: Reporter) -> dict[str, Any]:
    """Cut `spec` to its target through a temporary name; the result's facts (blocking)."""
    from edged.clips.cut import Source, cut_original, cut_vertical

    target = Path(spec.target)
    part = part_name(target, os.getpid())
    sources = [Source(path, start) for path, start in spec.sources]
    try:
        if spec.variant == "original":
            result = cut_original(sources, spec.start, spec.end, part, reporter.progress)
        else:
            result = cut_vertical(
                sources,
                spec.start,
                spec.end,
                part,
                mode=spec.mode,
                x_offset=spec.x_offset,
                encoders=spec.encoders,
                progress=reporter.progress,
            )
        _sync(part)
        os.replace(part, target)
        _sync_directory(target.parent)
    finally:
        part.unlink(missing_ok=True)
    return asdict(result)


def finish(spec: FinishSpec) -> dict[str, Any]:
    """Prepare `spec.source` for the cache, sign it, and put it at its target (blocking): the
    target's sha256 and size."""
    from edged.cache.prepare import prepare
    from edged.fileio import file_sha256
    from edged.provenance import ClipSigner
    from edged.provenance.identity import read_identity

    target = Path(spec.target)
    part = part_name(target, os.getpid())
    prepared = part.with_name(f"{part.name}.prepared")
    try:
        prepare(Path(spec.source), prepared, spec.encoders or ("libx264",))
        if spec.cert_file:
            identity = read_identity(Path(spec.cert_file), Path(spec.key_file))
            ClipSigner(identity)(prepared, part, spec.facts, {})
        else:
            os.replace(prepared, part)
        _sync(part)
        sha256, size = file_sha256(part), part.stat().st_size
        os.replace(part, target)
        _sync_directory(target.parent)
        Path(spec.source).unlink(missing_ok=True)
    finally:
        part.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)
    return {"sha256": sha256, "size": size}


def failure(error: BaseException) -> dict[str, str]:
    """The line a failed cut reports: a short reason without paths, and its kind."""
    from edged.clips.cut import CutError, no_space
    from edged.errors import EdgedError

    if isinstance(error, CutError):
        return {"error": str(error), "kind": error.kind}
    if isinstance(error, EdgedError):  # preparing or signing: messages name files, not paths
        return {"error": str(error), "kind": "media"}
    if isinstance(error, OSError) and no_space(error):
        return {"error": "the disk is full: the clip could not be written", "kind": "space"}
    if isinstance(error, OSError) and error.strerror:
        return {"error": f"cannot write the clip: {error.strerror}", "kind": "media"}
    return {"error": f"the cut failed: {type(error).__name__}", "kind": "media"}


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    lower_priority()
    reporter = Reporter(stdout)
    try:
        text = stdin.read()
        document = json.loads(text)
        if document.get("step") == "finish":
            document["encoders"] = tuple(document.get("encoders", ()))
            result = finish(FinishSpec(**document))
        else:
            result = cut(CutSpec.from_json(text), reporter)
        reporter.line({"result": result})
    except Exception as error:  # every failure is reported to the daemon, in one line
        reporter.line(failure(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
