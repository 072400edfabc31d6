"""Placement and publishing: a window goes where the grid wants it, with the seam crossfade
baked in at its entry, through the session's Publisher; windows are re-placed when the grid
or the loop moves. Every placement is one window-log entry. [scheduler lock held]"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from engine.dsp import SEAM_SECONDS, equal_power_crossfade, fit
from engine.publisher import StoreFull, WindowKind
from engine.session import Session, Target, Window

log = logging.getLogger("livediff.scheduler")
OnWindow = Callable[[Session, dict], None]


def previous(s: Session, target: Target) -> Window | None:
    """The window that plays right before the target is entered: the one ending where it
    starts, or, for the first window after a loop wrap, the one ending at the loop end."""
    if target.epoch != s.epoch:
        loop = s.loop_samples()
        if loop and target.start + target.entry == loop[0]:
            return next((w for w in s.windows.values() if w.start + w.frames == loop[1]), None)
    before = s.table(target.epoch).get(target.bar - s.setting("window_bars"))
    return before if before is not None and before.start + before.frames == target.start else None


def place(s: Session, window: Window, target: Target, kind: str, on_window: OnWindow, **details) -> bool:
    """Publish `window` at the target placement with the seam crossfade baked in at its entry;
    the slots of its earlier placement are withdrawn; one window-log entry. False if the
    store is full."""
    seam = round(SEAM_SECONDS * s.sample_rate)
    audio = fit(window.published_audio, target.frames)
    if window.kind is not WindowKind.PREROLL:
        # Fade from what played before; from silence after a preroll window or nothing.
        before_window = previous(s, target)
        before = before_window.continuation(seam) if before_window is not None \
            else np.zeros((s.channels, seam), np.float32)
        audio = audio.copy()
        audio[:, target.entry:] = equal_power_crossfade(before, audio[:, target.entry:])
    grid = s.grid
    start_beat = grid.beat_at_sample(target.start) if target.start != grid.bar_start_sample(window.bar) \
        else grid.bar_start_beat(window.bar)
    try:
        window_id = s.store.publish(epoch=target.epoch, start_sample=target.start, bar_index=window.bar & 0xFFFFFFFF,
                                    start_beat=start_beat, tempo_bpm=window.tempo, kind=window.kind, audio=audio)
    except StoreFull as exc:
        log.warning("session %016x: %s; window at bar %d waits", s.instance, exc, window.bar)
        s.blocked_until = time.monotonic() + 0.02
        return False
    if window.window_id:
        s.store.withdraw(window.window_id)
    window.start, window.frames, window.entry = target.start, target.frames, target.entry
    window.window_id = window_id
    on_window(s, {"instance": f"{s.instance:016x}", "epoch": target.epoch, "bar_index": window.bar,
                  "start_sample": target.start, "frames": target.frames, "entry": target.entry,
                  "start_beat": start_beat, "tempo": window.tempo, "grid_tempo": grid.tempo_bpm,
                  "anchor_sample": grid.anchor_sample, "anchor_beat": grid.anchor_beat,
                  "window": window.kind, "window_id": window_id, "kind": kind, "playhead": s.playhead,
                  "session_epoch": s.epoch, **details})
    return True


def replace(s: Session, targets: list[Target], on_window: OnWindow) -> None:
    """The grid or loop moved: put every window where the new grid wants it. Audio made within
    TEMPO_TOLERANCE of the new tempo (and the window already playing) keeps its samples and
    only moves; other windows move now and are then remade if there is time for it, else
    time-stretched (the planner; docs/scheduling.md, "Tempo changes")."""
    s.moved = False
    wanted = {(t.epoch, t.bar): t for t in targets}
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
            window.regenerate |= not window.fits(s.grid) and not playing
            moved = (target.start, target.frames, target.entry) != (window.start, window.frames, window.entry)
            if moved or (previous_moved and not playing):
                place(s, window, target, "move", on_window)
            previous_moved = moved


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
