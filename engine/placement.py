"""Placement and publishing: a window goes where the grid wants it, with the seam crossfade
baked in at its entry, through the session's Publisher; windows are re-placed (and the grid
acknowledged) as soon as a transport moves the grid or the loop. Every placement is one
window-log entry. [scheduler lock held]"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from engine.dsp import PEAK_CEILING, SEAM_SECONDS, crossfade, fit, limit
from engine.publisher import StoreFull, WindowKind
from engine.session import Session, Target, Window

log = logging.getLogger("livediff.scheduler")
OnWindow = Callable[[Session, dict], None]


def previous(s: Session, target: Target) -> Window | None:
    """The window that plays right before the target is entered: the one ending where it
    starts, or, for the first window after a loop wrap, the one ending at the loop end: made
    ahead of the wrap, in this pass; made after it (an offline shim or a late engine got there
    first), in the pass before, now history."""
    loop = s.loop_samples()
    if loop and target.start + target.entry == loop[0] and (target.epoch != s.epoch or s.post_wrap):
        played = s.windows if target.epoch != s.epoch else s.history
        return next((w for w in played.values() if w.start + w.frames == loop[1]), None)
    before = s.table(target.epoch).get(target.bar - s.setting("window_bars"))
    return before if before is not None and before.start + before.frames == target.start else None


def place(s: Session, window: Window, target: Target, kind: str, on_window: OnWindow,
          switch: tuple[int, np.ndarray] | None = None, superseded: list[int] | None = None, **details) -> bool:
    """Publish `window` at the target placement with the seam crossfade baked in at its entry
    (dsp.crossfade: the level is kept whether the two sides are alike or not), limited to
    -0.1 dBFS;
    the slots of its earlier placement are withdrawn; one window-log entry. `switch` (sample,
    audio playing there now) replaces a window that is playing: up to that sample its slots
    keep what plays now, then fade into the new audio. With `superseded`, the earlier
    placement's window id goes there instead, for the caller to withdraw once every window
    has moved (see replace). False if the store is full."""
    seam = round(SEAM_SECONDS * s.sample_rate)
    audio = fit(window.published_audio, target.frames).copy()
    if window.kind is not WindowKind.PREROLL:
        # Fade from what played before; from silence after a preroll window or nothing.
        before_window = previous(s, target)
        before = before_window.continuation(seam) if before_window is not None \
            else np.zeros((s.channels, seam), np.float32)
        audio[:, target.entry:] = crossfade(before, audio[:, target.entry:])
    if switch is not None:
        at, playing = switch
        cut = min(max(0, at - target.start), target.frames)
        playing = fit(playing, cut + seam)
        audio[:, :cut] = playing[:, :cut]
        audio[:, cut:] = crossfade(playing[:, cut:], audio[:, cut:])
    audio = limit(audio, PEAK_CEILING)    # seams may sum correlated audio; nothing published exceeds -0.1 dBFS
    grid = s.grid
    start_beat = grid.beat_at_sample(target.start) if target.start != grid.bar_start_sample(window.bar) \
        else grid.bar_start_beat(window.bar)
    publish = lambda: s.store.publish(epoch=target.epoch, start_sample=target.start,  # noqa: E731
                                      bar_index=window.bar & 0xFFFFFFFF, start_beat=start_beat,
                                      tempo_bpm=window.tempo, kind=window.kind, grid=window.grid, audio=audio)
    try:
        try:
            window_id = publish()
        except StoreFull:
            if not superseded:
                raise
            withdraw_all(s, superseded)     # room first; a gap may show for a moment
            window_id = publish()
    except StoreFull as exc:
        log.warning("session %016x: %s; window at bar %d waits", s.instance, exc, window.bar)
        s.blocked_until = time.monotonic() + 0.02
        return False
    if window.window_id:
        if superseded is None:
            s.store.withdraw(window.window_id)
        else:
            superseded.append(window.window_id)
    window.start, window.frames, window.entry = target.start, target.frames, target.entry
    window.window_id, window.in_slots = window_id, audio
    log_window(s, window, target.epoch, kind, on_window, start_beat=start_beat, **details)
    return True


def log_window(s: Session, window: Window, epoch: int, kind: str, on_window: OnWindow, **details) -> None:
    """One window-log entry: where the window is, what it was made for, the session's grid now."""
    segment = s.grid.segment_at_sample(window.start)
    on_window(s, {"instance": f"{s.instance:016x}", "epoch": epoch, "bar_index": window.bar,
                  "start_sample": window.start, "frames": window.frames, "entry": window.entry,
                  "tempo": window.tempo, "grid_tempo": segment.tempo, "anchor_sample": segment.sample,
                  "anchor_beat": segment.beat, "grid": window.grid, "stale": window.stale, "window": window.kind,
                  "window_id": window.window_id, "kind": kind, "playhead": s.playhead, "session_epoch": s.epoch,
                  "session_grid": s.grid_seq, "session_tempo": s.grid.tempo_bpm, **details})


def replace(s: Session, targets: list[Target], on_window: OnWindow) -> None:
    """The grid or loop moved (or only the shim's grid sequence): put every window where the
    grid wants it now. A window whose audio still lands on the grid's bar lines (within the
    session's drift tolerance, where it has yet to play) is acknowledged for the new grid;
    the others become stale stand-ins (moved now; stretched or remade by the planner).
    Earlier placements are withdrawn only after every window has moved: the shim reads while
    this runs, and moved one by one in play order, a window's end would come earlier (the
    tempo rose) before the next one's start does, a gap a block could play (in reverse
    order, the same when the tempo falls). While both are there, the newer wins."""
    wanted = {(t.epoch, t.bar): t for t in targets}
    superseded: list[int] = []
    previous_moved = False      # in play order: a moved window changes the seam of the next one
    for epoch in (s.epoch, s.next_epoch):
        table = s.table(epoch) or {}
        for bar in sorted(table):
            window, target = table[bar], wanted.get((epoch, bar))
            if target is None:
                if window.start > s.playhead or epoch != s.epoch:   # no longer wanted: never play it
                    s.store.withdraw(window.window_id)
                    del table[bar]
                continue
            playing = window.start <= s.playhead and epoch == s.epoch
            unplayed = s.playhead if epoch == s.epoch else target.start
            window.stale = window.drift(s.grid, target.start, target.frames, unplayed) > s.drift_tolerance()
            acknowledged = window.grid
            if not window.stale:
                window.grid = s.grid_seq
            moved = (target.start, target.frames, target.entry) != (window.start, window.frames, window.entry)
            if moved or (previous_moved and not playing):
                place(s, window, target, "move", on_window, superseded=superseded)
            elif window.grid != acknowledged:
                s.store.acknowledge(window.window_id, window.grid)
                log_window(s, window, epoch, "ack", on_window)
            previous_moved = moved
    withdraw_all(s, superseded)


def withdraw_all(s: Session, window_ids: list[int]) -> None:
    for window_id in window_ids:
        s.store.withdraw(window_id)
    window_ids.clear()


def republish_next(s: Session, epoch: int, window: Window, on_window: OnWindow) -> None:
    """A window changed: the next one's baked seam fades from its continuation, so redo it."""
    table = s.table(epoch)
    following = table.get(window.bar + s.setting("window_bars"))
    if epoch == s.epoch and s.loop_samples() and window.start + window.frames == s.loop_samples()[1]:
        table, epoch = s.ahead, s.next_epoch
        following = min(s.ahead.values(), key=lambda w: w.bar, default=None)
    if following is not None and following.window_id and following.start > s.playhead:
        place(s, following, Target(epoch, following.bar, following.start, following.frames, following.entry, 0.0),
              "seam", on_window)
