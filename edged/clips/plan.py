"""What a clip is cut from and how, as plain decisions: no I/O, time passed in.

Which recorded segments a range needs and why a range is refused; the keyframe an `original`
cut starts from (copying packets cannot start between keyframes: it starts at the keyframe at or
before the requested start, so up to one GOP, `gop_seconds`, early, and ends with the last frame
shown before the requested end); the 9:16 geometry of the `vertical` variant and its filter
graph, the same one for PyAV and for the `ffmpeg` command line.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from edged.errors import EdgedError

# Segments closer than this are one recording: the next segment opens on the keyframe after the
# last frame of the one before, on the wall clock of its arrival.
GAP_TOLERANCE_SECONDS = 1.0
VERTICAL_MODES = ("fill", "crop")
BACKGROUND_SCALE = 4  # the fill's background is blurred at a quarter of the size, then scaled up
BLUR = "sizeX=8"  # avgblur (a box average; the wheel has no boxblur) at the quarter size


class ClipRefused(EdgedError, ValueError):
    """A clip that cannot be cut: `reason` for the crew, `available` what is recorded."""

    def __init__(self, reason: str, available: Sequence[Span] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.available = tuple(available)


@dataclass(frozen=True)
class Span:
    """A stretch of wall-clock time, epoch seconds, `end` excluded."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_json(self) -> dict[str, str]:
        return {"start": format_utc(self.start), "end": format_utc(self.end)}


@dataclass(frozen=True)
class Recorded:
    """A closed segment as a clip needs it: its file, its times and its sha256."""

    path: str
    start: float
    end: float
    sha256: str = ""
    device: str = ""  # the camera (or capture card) that recorded it


def format_utc(moment: float) -> str:
    """Epoch seconds as RFC 3339 UTC to the millisecond ("2026-11-30T16:00:00.250Z")."""
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def available(spans: Iterable[Span], tolerance: float = GAP_TOLERANCE_SECONDS) -> tuple[Span, ...]:
    """The recorded stretches: spans merged where the gap between them is under `tolerance`."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if merged and span.start - merged[-1].end <= tolerance:
            last = merged[-1]
            merged[-1] = Span(last.start, max(last.end, span.end))
        else:
            merged.append(span)
    return tuple(merged)


def check_range(start: float, end: float, max_seconds: float) -> None:
    """Refuse a range that is empty, backwards or too long (before looking at recordings)."""
    if end <= start:
        raise ClipRefused(
            f"the end ({format_utc(end)}) is not after the start ({format_utc(start)})"
        )
    if end - start > max_seconds:
        raise ClipRefused(
            f"{end - start:.1f} s asked; a clip may be at most {max_seconds:g} s "
            "([clips] max_seconds)"
        )


def check_recorded(start: float, end: float, recorded: Sequence[Span]) -> None:
    """Refuse a range not wholly inside one recorded stretch, naming what is recorded."""
    if any(span.start <= start and end <= span.end for span in recorded):
        return
    partly = any(span.start < end and start < span.end for span in recorded)
    what = "partly" if partly else "at all"
    listed = "; ".join(f"{format_utc(s.start)} to {format_utc(s.end)}" for s in recorded[-5:])
    raise ClipRefused(
        f"{format_utc(start)} to {format_utc(end)} is not recorded {what}; recorded: "
        + (listed or "nothing"),
        recorded,
    )


def segments_for(recorded: Sequence[Recorded], start: float, end: float) -> tuple[Recorded, ...]:
    """The segments a range needs, in order: every one that overlaps it."""
    chosen = [seg for seg in recorded if seg.start < end and start < seg.end]
    return tuple(sorted(chosen, key=lambda seg: seg.start))


def keyframe_at_or_before(keyframes: Sequence[float], moment: float) -> float:
    """Of sorted keyframe times, the last at or before `moment` (the first if none is)."""
    if not keyframes:
        raise ValueError("no keyframe")
    index = bisect.bisect_right(keyframes, moment + 1e-6)
    return keyframes[max(0, index - 1)]


# -- vertical -----------------------------------------------------------------------------------


def even(value: float) -> int:
    """`value` rounded to an even number of pixels, at least 2 (yuv420p needs even sizes)."""
    return max(2, round(value / 2) * 2)


@dataclass(frozen=True)
class Geometry:
    """A 9:16 picture made from a source picture."""

    mode: str  # "fill" or "crop"
    source_width: int
    source_height: int
    width: int  # the output: the source height wide (1080x1920 from 1080p)
    height: int
    crop_width: int = 0  # crop: the 9:16 part of the source taken, from crop_x
    crop_x: int = 0
    fit_width: int = 0  # fill: the whole picture fitted, over its blurred copy
    fit_height: int = 0


def vertical_geometry(
    source_width: int, source_height: int, mode: str = "fill", x_offset: int | None = None
) -> Geometry:
    """The 9:16 output of a source: `fill` fits the whole picture over a blurred copy of itself,
    `crop` takes the full-height 9:16 part at `x_offset` (None: the centre, clamped inside)."""
    if mode not in VERTICAL_MODES:
        raise ValueError(f"mode {mode!r}: use fill or crop")
    if source_width < 2 or source_height < 2:
        raise ValueError(f"source {source_width}x{source_height} is too small")
    width, height = even(source_height), even(source_height * 16 / 9)
    if mode == "crop":
        crop_width = min(even(source_height * 9 / 16), source_width // 2 * 2)
        room = source_width - crop_width
        x = room // 2 if x_offset is None else min(max(0, x_offset), room)
        return Geometry(mode, source_width, source_height, width, height, crop_width, x // 2 * 2)
    if source_width * height >= source_height * width:  # wider than 9:16: fit the width
        fit_width, fit_height = width, min(height, even(width * source_height / source_width))
    else:
        fit_width, fit_height = min(width, even(height * source_width / source_height)), height
    return Geometry(
        mode, source_width, source_height, width, height, fit_width=fit_width, fit_height=fit_height
    )


Filter = tuple[str, str]  # (FFmpeg filter name, its arguments)


@dataclass(frozen=True)
class FilterPlan:
    """A filter graph: `crop` is one chain; `fill` splits, blurs `background`, scales
    `foreground` and overlays it at `overlay`, then `tail`."""

    chain: tuple[Filter, ...] = ()  # crop: the whole graph
    background: tuple[Filter, ...] = ()
    foreground: tuple[Filter, ...] = ()
    overlay: Filter = ("", "")
    tail: tuple[Filter, ...] = (("format", "yuv420p"),)


def filter_plan(geometry: Geometry) -> FilterPlan:
    """The filters that make `geometry`."""
    g = geometry
    if g.mode == "crop":
        return FilterPlan(
            chain=(
                ("crop", f"{g.crop_width}:{g.source_height}:{g.crop_x}:0"),
                ("scale", f"{g.width}:{g.height}"),
                ("format", "yuv420p"),
            )
        )
    small_width, small_height = even(g.width / BACKGROUND_SCALE), even(g.height / BACKGROUND_SCALE)
    return FilterPlan(
        background=(
            ("scale", f"{small_width}:{small_height}:force_original_aspect_ratio=increase"),
            ("crop", f"{small_width}:{small_height}"),
            ("avgblur", BLUR),
            ("scale", f"{g.width}:{g.height}"),
        ),
        foreground=(("scale", f"{g.fit_width}:{g.fit_height}"),),
        overlay=("overlay", f"{(g.width - g.fit_width) // 2}:{(g.height - g.fit_height) // 2}"),
    )


def _chain(filters: Iterable[Filter]) -> str:
    return ",".join(f"{name}={args}" if args else name for name, args in filters)


def ffmpeg_graph(plan: FilterPlan) -> str:
    """The same graph as an `ffmpeg -filter_complex` string (one input, one output)."""
    if plan.chain:
        return _chain(plan.chain)
    return (
        f"split=2[bg][fg];[bg]{_chain(plan.background)}[b];[fg]{_chain(plan.foreground)}[f];"
        f"[b][f]{_chain([plan.overlay])},{_chain(plan.tail)}"
    )
