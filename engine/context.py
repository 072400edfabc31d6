"""Context assembly: the WindowRequest a job's window is generated from. Window b hears the
context_bars bars before it: the track's audio before its horizon, the session's own windows
from the horizon on (docs/scheduling.md, "Context"). [worker-thread, scheduler lock held]"""
from __future__ import annotations

from typing import Callable

import numpy as np

from engine import context_source
from engine.dsp import SEAM_SECONDS, fit
from engine.generator import WindowRequest
from engine.planner import Job
from engine.publisher import WindowKind
from engine.session import Session, Window
from engine.timeline import window_bar

_MASK64 = (1 << 64) - 1


def window_seed(session_seed: int, bar: int) -> int:
    """splitmix64 of (session seed, bar index): a window's seed depends on where it is, not on
    when or in what order it was generated."""
    x = ((((session_seed & 0xFFFFFFFF) << 32) | (bar & 0xFFFFFFFF)) + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & 0x7FFFFFFF


def context_sources(bar: int, horizon: int, context_bars: int, has_generated: Callable[[int], bool]) -> list[tuple[int, str]]:
    """(bar, "input" | "generated") for each context bar of window `bar`.

    Bars before the horizon come from input, bars from the horizon on from generated windows;
    when one of those was never generated (right after start or a seek) the context is instead
    the context_bars bars of input ending at the horizon."""
    bars = range(bar - context_bars, bar)
    if all(b < horizon or has_generated(b) for b in bars):
        return [(b, "input" if b < horizon else "generated") for b in bars]
    return [(b, "input") for b in range(horizon - context_bars, horizon)]


def generated_bar(session: Session, table: dict[int, Window], bar: int) -> np.ndarray | None:
    """The generator's own audio of `bar` (not the baked seam), cut at this grid's bar lines."""
    window = table.get(window_bar(bar, session.setting("window_bars")))
    if window is None or window.kind is WindowKind.PREROLL:
        return None
    grid = session.grid
    offset = grid.bar_start_sample(bar) - grid.bar_start_sample(window.bar)
    return fit(window.audio[:, offset:], grid.bar_start_sample(bar + 1) - grid.bar_start_sample(bar))


def request(job: Job) -> WindowRequest:
    s, grid = job.session, job.session.grid
    span, context_bars = s.setting("window_bars"), s.setting("context_bars")
    table = s.table(job.target.epoch)
    generated = lambda b: generated_bar(s, table, b)  # noqa: E731
    heard = context_source.source_at(s, job.horizon)     # main, sidechain or both: for the whole window
    context_source.in_use(s, heard, job.horizon)
    track_bar = lambda b: context_source.read_bar(s, heard, b)  # noqa: E731
    sources = context_sources(job.bar, job.horizon, context_bars, lambda b: generated(b) is not None)
    parts = [track_bar(b) if source == "input" else generated(b) for b, source in sources]
    track = [track_bar(b) for b in range(job.horizon - context_bars, job.horizon)]
    frames = grid.bar_start_sample(job.bar + span) - grid.bar_start_sample(job.bar)
    return WindowRequest(context=np.concatenate(parts, axis=1), sample_rate=s.sample_rate,
                         tempo_bpm=grid.tempo_bpm, tsig_num=grid.tsig_num, tsig_den=grid.tsig_den,
                         context_bars=context_bars, bars=span, frames=frames,
                         tail_frames=round(SEAM_SECONDS * s.sample_rate), style=s.setting("style"),
                         seed=window_seed(s.setting("seed"), job.bar), bar_index=job.bar,
                         input_context=np.concatenate(track, axis=1), input_gap_bars=job.bar - job.horizon,
                         steps=s.sound.steps)
