"""Which of the track's audio a window's context is taken from: the main input, the sidechain,
or both summed (the context_source parameter). "auto" takes the sidechain while the host feeds
it sound and the main input otherwise.

The choice is made per context horizon (a bar line) from the audio heard before that line, not
from when a message arrived, so it is the same in realtime and offline, it only ever changes at
bar lines, and a window remade later gets the same context. Auto's hysteresis: the sidechain is
taken from the first bar line after a bar in which it sounded, and given up only after
HOLD_BARS silent bars in a row, so one quiet bar does not flip the source.
[worker-thread, scheduler lock held]"""
from __future__ import annotations

import logging

import numpy as np

from engine.anchoring import sounds      # one threshold for "the track sounded" (anchoring.SOUNDING_RMS)
from engine.session import Session

log = logging.getLogger("livediff.scheduler")

SOURCES = ("main", "sidechain", "both")     # what a context can be read from ("auto" picks one)
HOLD_BARS = 2
_STORES = {"main": "input", "sidechain": "sidechain"}   # source -> Session.inputs key


def bar_span(session: Session, bar: int) -> tuple[int, int]:
    """(first sample, frames) of `bar` between the bar lines it was played at (the session's tempo
    map and meters, Grid.bar_span_beats)."""
    first, last = session.grid.bar_span_beats(bar)
    start = session.grid.sample_at_beat(first)
    return start, session.grid.sample_at_beat(last) - start


def read_bar(session: Session, source: str, bar: int) -> np.ndarray:
    """What `source` played in `bar` (bar_span); "both" is the two summed at unity gain, as a mix
    bus would."""
    start, frames = bar_span(session, bar)
    if source == "both":
        return session.inputs["input"].read(start, frames) + session.inputs["sidechain"].read(start, frames)
    return session.inputs[_STORES[source]].read(start, frames)


def bar_sounds(session: Session, source: str, bar: int) -> bool:
    """Whether `source` had sound in `bar`; a bar nothing was received for is not read."""
    start, frames = bar_span(session, bar)
    names = ("main", "sidechain") if source == "both" else (source,)
    if not any(getattr(session.inputs[_STORES[name]], "holds", lambda *_: True)(start, frames) for name in names):
        return False
    return sounds(read_bar(session, source, bar))


def version(session: Session, source: str, start: int, frames: int) -> tuple:
    """Changes whenever what `source` played in [start, start + frames) changes (a sidechain
    file never does)."""
    stores = [session.inputs[_STORES[name]] for name in (("main", "sidechain") if source == "both" else (source,))]
    return tuple(store.version(start, frames) if hasattr(store, "version") else () for store in stores)


def source_at(session: Session, line: int) -> str:
    """The source of the context that ends at bar line `line` (a window's horizon)."""
    choice = str(session.params.get("context_source", "auto"))
    if choice != "auto":
        return choice
    heard = any(sounds(read_bar(session, "sidechain", bar)) for bar in range(line - HOLD_BARS, line))
    return "sidechain" if heard else "main"


def in_use(session: Session, source: str, line: int) -> None:
    """Record the source a window's context came from (shown in STATUS); a change is one log line."""
    if source != session.context_in_use:
        log.info("session %016x: context from the %s from bar %d on (context_source %s)", session.instance,
                 "main input" if source == "main" else "sidechain" if source == "sidechain"
                 else "main input and sidechain summed", line, session.params.get("context_source", "auto"))
        session.context_in_use = source
