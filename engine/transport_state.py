"""The transport state machine of a session: what a transport snapshot, a block of input or a
parameter change does to the session's timeline (epochs, loop wraps, grid changes, restarts).
[socket-thread, scheduler lock held]: everything here is quick; nothing generates."""
from __future__ import annotations

import logging
import math

from engine import placement, planner
from engine.session import EPOCH_STORM, Session, warn_rarely
from engine.timeline import Grid
from engine.transport import InputBlock, TransportSnapshot

log = logging.getLogger("livediff.scheduler")

# Parameters that change what a window sounds like: a change restarts the timeline.
SHAPING_PARAMS = ("seed", "style", "window_bars", "lookahead", "context_bars", "generator")
# Parameters whose change takes effect at the next window: the one playing plays to its end.
NEXT_WINDOW_PARAMS = ("context_source", "variation", "sound")


def on_params(session: Session, params: dict[str, float | str]) -> None:
    before = dict(session.params)
    session.params.update(params)
    changed = lambda names: any(before.get(n) != session.params.get(n) for n in names)  # noqa: E731
    if changed(SHAPING_PARAMS):
        session.problem, session.blocked_until = None, 0.0
        restart_timeline(session, withdraw_from=session.playhead)
    elif changed(NEXT_WINDOW_PARAMS):
        restart_after_playhead(session)


def on_transport(session: Session, t: TransportSnapshot, now: float, on_window: placement.OnWindow) -> None:
    """Apply a transport at once: windows that no longer match the grid or the loop are
    re-placed (or withdrawn) here, before anything else plays, and those that still fit are
    acknowledged for the shim's new grid sequence."""
    new_epoch = t.epoch != session.epoch
    grid = session.tracker.update(
        tempo=t.tempo, tsig_num=t.tsig_num, tsig_den=t.tsig_den, pos_samples=t.pos_samples,
        pos_beats=t.pos_beats, bar_start_beats=t.bar_start_beats, tempo_valid=t.tempo_valid,
        tsig_valid=t.tsig_valid, reanchor=new_epoch)
    loop = t.loop if t.loop is not None and all(map(math.isfinite, t.loop)) and t.loop[1] > t.loop[0] else None
    if loop is None and session.loop_inferred:
        loop = session.loop         # a loop the host never announced holds until the playhead leaves it
        if not new_epoch and t.pos_samples >= session.grid.sample_at_beat(loop[1]):
            log.info("session %016x: the playhead went past the end of the loop it jumped back in; no longer "
                     "predicting that jump", session.instance)
            loop, session.loop_inferred = None, False
    else:
        session.loop_inferred = False
    if not new_epoch and session.playing and t.pos_samples < session.playhead - 1:
        warn_rarely(session, "backwards", now, log, "position went back from sample %d to %d within epoch %d "
                    "(a jump the shim should have made a new epoch); windows follow the position",
                    session.playhead, t.pos_samples, t.epoch)
    changed = t.grid != session.grid_seq
    if new_epoch:
        _enter_epoch(session, t, grid, loop, now)
    elif grid is not session.grid or loop != session.loop:
        if loop != session.loop and session.ahead:
            withdraw_ahead(session)
        session.grid, session.loop, session.changed_at, changed = grid, loop, t.pos_samples, True
    session.grid_seq = t.grid
    session.offline = t.offline
    session.playing = t.playing
    session.playhead, session.playhead_wall = t.pos_samples, now
    in_loop = session.grid is not None and session.loop_samples() is not None
    changed |= in_loop != session.in_loop    # entering the loop clips the window at its end
    session.in_loop = in_loop
    session.underruns = t.underruns
    session.store.set_playhead(session.epoch, t.pos_samples)
    if changed and (session.windows or session.ahead):
        placement.replace(session, planner.targets(session), on_window)


def _enter_epoch(session: Session, t: TransportSnapshot, grid: Grid, loop, now: float) -> None:
    """A loop wrap that was predicted keeps the windows made ahead for it; anything else
    (seek, restart, meter change, an unpredicted jump) starts the timeline over."""
    wrapped = (session.epoch is not None and session.loop is not None and t.epoch == session.next_epoch
               and grid is session.grid and loop == session.loop and _at_loop_start(session, t, grid))
    if not t.sync_switch:               # the plugin's parameter did it, not a jumping host
        session.epoch_changes.append(now)
    storm = len(session.epoch_changes) == EPOCH_STORM and now - session.epoch_changes[0] < 1.0
    if storm:
        warn_rarely(session, "storm", now, log, "%d epoch changes within %.2f s (the host position jumps, e.g. "
                    "backwards every block); generation restarts at each one", EPOCH_STORM,
                    now - session.epoch_changes[0])
    if not wrapped and session.loop_inferred:
        loop, session.loop_inferred = None, False     # a jump elsewhere: not that loop any more
    jumped_back = not wrapped and loop is None and _jumped_back(session, t, grid)
    previous = dict(session.windows)
    if wrapped:
        session.windows, session.ahead = session.ahead, {}
    if jumped_back:
        end = session.input_end.get(session.epoch, session.playhead)
        # a host without loop points wraps at block granularity, continuing as far past the loop
        # start as it went past the end: the loop begins at the bar line just before the jump's target
        line = grid.bar_start_sample(grid.bar_at_sample(t.pos_samples))
        past = t.pos_samples - line if t.pos_samples - line <= _bar(grid) / 8 else 0
        loop = (grid.beat_at_sample(t.pos_samples - past), grid.beat_at_sample(end - past))
        session.loop_inferred = True
    if session.epoch is not None and not storm:
        log.info("session %016x: epoch %d: %s", session.instance, t.epoch,
                 _epoch_cause(session, t, grid, wrapped, loop if jumped_back else None))
    session.post_wrap = wrapped or jumped_back
    session.epoch, session.epoch_start, session.grid, session.loop = t.epoch, t.pos_samples, grid, loop
    session.changed_at = t.pos_samples
    if not wrapped:
        restart_timeline(session, withdraw_from=None)
    session.history = {**session.history, **previous} if session.post_wrap else {}


def _bar(grid: Grid) -> int:
    return grid.bar_start_sample(1) - grid.bar_start_sample(0)


def _at_loop_start(session: Session, t: TransportSnapshot, grid: Grid) -> bool:
    """The transport is where a wrap of the loop lands: at its start (a host that announces the
    loop splits the block there), or, for a loop the host never announced, as far past its start
    as the jump went past its end (a wrap at block granularity), within an eighth of a bar."""
    start, end = (grid.sample_at_beat(b) for b in session.loop)
    if not session.loop_inferred:
        return abs(t.pos_samples - start) <= 1
    beyond = session.input_end.get(session.epoch, session.playhead) - end
    return 0 <= t.pos_samples - start <= _bar(grid) / 8 and abs(t.pos_samples - start - beyond) <= 1


def _jumped_back(session: Session, t: TransportSnapshot, grid: Grid) -> bool:
    """The host jumped back, by a bar or more, to a place heard in this epoch, on the same grid:
    a loop wrap of a host that sends no loop points (qtractor), or a seek back."""
    if session.epoch is None or not session.playing or t.epoch != session.next_epoch or grid is not session.grid:
        return False
    end = session.input_end.get(session.epoch, session.playhead)
    return min(session.epoch_start, session.heard_from) - _bar(grid) / 8 <= t.pos_samples <= end - _bar(grid)


def _epoch_cause(session: Session, t: TransportSnapshot, grid: Grid, wrapped: bool, inferred_loop) -> str:
    """Why the shim started a new epoch, in words (for the log)."""
    to_bar = grid.bar_at_sample(t.pos_samples)
    if wrapped:
        return f"loop wrap back to bar {to_bar} (windows made ahead for it are kept)"
    if inferred_loop:
        from_bar = grid.bar_at_sample(session.input_end.get(session.epoch, session.playhead) - 1)
        return (f"jumped back from bar {from_bar} to bar {to_bar}, into what was heard: a loop without loop points "
                f"(beats {inferred_loop[0]:.6g}-{inferred_loop[1]:.6g}); its bars continue what played before the "
                f"jump, and the next jump back is predicted")
    if t.sync_switch:
        return f"the plugin's sync_mode moved the position onto the host's (bar {to_bar}); windows start over"
    moved = "" if grid is session.grid else f"; grid now {grid.tempo_bpm:.6g} BPM {grid.tsig_num}/{grid.tsig_den}"
    if not session.playing:
        return f"transport started at bar {to_bar}{moved}"
    from_bar = session.grid.bar_at_sample(session.playhead)
    direction = "back" if t.pos_samples < session.playhead else "ahead"
    return f"jumped {direction} from bar {from_bar} to bar {to_bar} (a seek or a loop){moved}; windows start over"


def on_audio(session: Session, block: InputBlock) -> None:
    session.input.write(block.pos_samples, block.input)
    session.heard_from = min(session.heard_from, block.pos_samples)
    if block.sidechain is not None:
        session.inputs["sidechain"].write(block.pos_samples, block.sidechain)
    end = block.pos_samples + block.frames
    session.input_end[block.epoch] = max(end, session.input_end.get(block.epoch, end))
    for old in [e for e in session.input_end if e not in (session.epoch, block.epoch)]:
        del session.input_end[old]


def restart_timeline(session: Session, withdraw_from: int | None) -> None:
    """Forget every window (a new epoch, or a parameter that shapes the audio changed). Slots
    of the current epoch are withdrawn from `withdraw_from` on, or all of them when it is None
    (a new epoch number may have been used by windows made ahead of a loop wrap)."""
    session.windows.clear()
    withdraw_ahead(session)
    session.in_flight.clear()
    session.version += 1
    if session.epoch is not None:
        session.store.invalidate(session.epoch, -(1 << 62) if withdraw_from is None else withdraw_from)


def restart_after_playhead(session: Session) -> None:
    """Forget the windows that have not started playing (and those made ahead of a loop wrap);
    the ones played and playing stay, as published and as context."""
    for bar, window in list(session.windows.items()):
        if window.start > session.playhead:
            session.store.withdraw(window.window_id)
            del session.windows[bar]
    withdraw_ahead(session)
    session.in_flight.clear()
    session.version += 1


def withdraw_ahead(session: Session) -> None:
    if session.epoch is not None:
        session.store.invalidate(session.next_epoch, -(1 << 62))
    session.ahead = {}
