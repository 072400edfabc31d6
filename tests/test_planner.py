"""The pure planner and the transport state machine, with the clock passed in and an in-memory
publisher: no threads, no sleeps. What gets planned (jobs and their start times) after starts,
missing input, tempo changes (stand-ins stretched, remade at once offline and at the last
moment in realtime), and what a transport re-places and acknowledges the moment it arrives."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.convert import new_session
from engine import placement, planner, transport_state
from engine.planner import Estimates
from engine.publisher import StoreFull, WindowKind
from engine.session import Window, made_for
from engine.transport import InputBlock, TransportSnapshot

SR = 8000


class MemoryStore:
    """A Publisher that keeps what it was told (the engine's interface, no shared memory)."""
    capacity, slot_count = 4 * SR, 16

    def __init__(self):
        self.windows: dict[int, dict] = {}
        self.next_id, self.full = 1, False

    def publish(self, *, epoch, start_sample, bar_index, start_beat, tempo_bpm, kind, grid, audio):
        if self.full:
            raise StoreFull("full")
        self.next_id += 1
        self.windows[self.next_id] = dict(epoch=epoch, start=start_sample, frames=audio.shape[1], bar=bar_index,
                                          tempo=tempo_bpm, kind=kind, grid=grid, audio=audio)
        return self.next_id

    def acknowledge(self, window_id, grid):
        self.windows[window_id]["grid"] = grid

    def withdraw(self, window_id):
        return 1 if self.windows.pop(window_id, None) else 0

    def invalidate(self, epoch, from_sample):
        gone = [i for i, w in self.windows.items() if w["epoch"] == epoch and w["start"] + w["frames"] > from_sample]
        for i in gone:
            del self.windows[i]
        return len(gone)

    def set_playhead(self, epoch, sample):
        pass


def session(offline=True, **params):
    return new_session(1, SR, 1, MemoryStore(), offline=offline, **{"generator": "loop", **params})


def transport(s, pos, tempo=240.0, beats=None, now=0.0, epoch=0, grid=1, log=None):
    """A transport at song sample `pos` (beats from a constant 240 BPM unless given)."""
    beats = pos * 240.0 / 60 / SR if beats is None else beats
    transport_state.on_transport(s, TransportSnapshot(epoch=epoch, playing=True, tempo=tempo, pos_samples=pos,
                                                      pos_beats=beats, bar_start_beats=beats // 4 * 4, tsig_num=4,
                                                      tsig_den=4, offline=s.offline, grid=grid), now,
                                 (lambda _s, e: log.append(e)) if log is not None else (lambda *_: None))


def give_window(s, bar, tempo=240.0):
    """A generated window for `bar`, placed where the grid wants it (what the worker would do)."""
    target = next(t for t in planner.targets(s) if t.bar == bar)
    audio = np.full((1, target.frames + 240), 0.25, np.float32)
    window = Window(bar, WindowKind.GENERATED, audio, made_for(s.grid, bar, tempo, (4, 4)), grid=s.grid_seq)
    assert placement.place(s, window, target, "generate", lambda *_: None)
    s.windows[bar] = window
    return window


def jobs(s, now, estimates=None):
    return planner.pending(s, now, estimates or Estimates(), lambda name: True)


def test_targets_are_the_playhead_window_and_the_lookahead_after_it():
    s = session(lookahead=3)
    transport(s, SR // 2)                       # 240 BPM: a bar is 1 s = 8000 samples
    targets = planner.targets(s)
    assert [(t.bar, t.start, t.frames, t.entry) for t in targets] == [(b, b * SR, SR, 0) for b in range(4)]
    assert [t.deadline for t in targets] == pytest.approx([-0.5, 0.5, 1.5, 2.5])


def test_a_loop_clips_the_window_at_its_end_and_predicts_the_wrap():
    s = session(lookahead=3)
    transport_state.on_transport(s, TransportSnapshot(epoch=0, playing=True, tempo=240.0, pos_samples=SR + 10,
                                                      pos_beats=4 + 10 / 2000, bar_start_beats=4.0, tsig_num=4,
                                                      tsig_den=4, loop=(4.0, 10.0), grid=1), 0.0, lambda *_: None)
    targets = planner.targets(s)
    assert [(t.epoch, t.bar, t.start, t.frames, t.entry) for t in targets] == [
        (0, 1, SR, SR, 0), (0, 2, 2 * SR, SR // 2, 0), (1, 1, SR, SR, 0), (1, 2, 2 * SR, SR // 2, 0)]
    # after the wrap: the loop end (2.5 s from sample 0, 1.25 s wall from the playhead) plus the way in
    assert targets[2].deadline == pytest.approx((2.5 * SR - SR - 10) / SR)


def test_new_windows_start_now_offline_waits_for_input_realtime_until_the_budget():
    s = session(offline=True)
    transport(s, 0)
    plans = {job.bar: earliest for job, earliest in jobs(s, now=0.0)}
    assert plans[0] == 0.0 and plans[1] == 0.0          # preroll: nothing to wait for
    transport(s, SR)                                      # bar 1: window 2 hears the input before bar 1
    assert {job.bar: e for job, e in jobs(s, now=0.0)}[2] == math.inf
    transport_state.on_audio(s, InputBlock(epoch=0, pos_samples=0, input=np.zeros((1, SR - 1), np.float32)))
    assert {job.bar: e for job, e in jobs(s, now=0.0)}[2] == math.inf, "bar 0's input has not all arrived"
    transport_state.on_audio(s, InputBlock(epoch=0, pos_samples=SR - 1, input=np.zeros((1, 1), np.float32)))
    assert {job.bar: e for job, e in jobs(s, now=0.0)}[2] == 0.0
    live = session(offline=False)
    transport(live, 0, now=9.0)
    transport(live, SR, now=10.0)
    estimates = Estimates()
    earliest = {job.bar: e for job, e in jobs(live, now=10.0, estimates=estimates)}[2]
    assert earliest == pytest.approx(11.0 - estimates.budget(planner.generation_key(live)))


def test_a_tempo_change_re_places_and_acknowledges_at_once_and_plans_stand_ins():
    s = session(offline=True, lookahead=2)
    transport(s, 0, grid=1)
    playing, ahead = give_window(s, 0), give_window(s, 1)
    log = []
    transport(s, SR // 2, beats=2.0, grid=2, log=log)     # the same grid: only the sequence moves on
    assert [e["kind"] for e in log] == ["ack", "ack"] and s.store.windows[playing.window_id]["grid"] == 2
    log.clear()
    transport(s, SR // 2 + 100, tempo=200.0, beats=2.0 + 100 / 2000, grid=3, log=log)   # 240 -> 200 BPM
    # re-placed on arrival: the playing window keeps its start and ends at the new bar line, the one
    # ahead moved there; neither is acknowledged for the new grid (they were made at 240 BPM)
    new_line = SR // 2 + 100 + round(((4 - (2.0 + 100 / 2000)) * 60 / 200) * SR)
    assert {e["bar_index"]: (e["kind"], e["start_sample"], e["frames"], e["grid"]) for e in log} == {
        0: ("move", 0, new_line, 2), 1: ("move", new_line, round(4 * 60 / 200 * SR), 2)}
    assert playing.stale and ahead.stale
    plans = {(job.bar, job.kind): (earliest, job.from_sample) for job, earliest in jobs(s, now=0.0)}
    assert plans == {(0, "stretch"): (0.0, SR // 2 + 100), (1, "generate"): (0.0, 0)}
    live = session(offline=False, lookahead=2)
    transport(live, 0, grid=1)
    give_window(live, 0), give_window(live, 1)
    transport(live, SR // 2 + 100, tempo=200.0, beats=2.0 + 100 / 2000, grid=3, now=5.0)
    estimates = Estimates()
    plans = {(job.bar, job.kind): earliest for job, earliest in jobs(live, now=5.0, estimates=estimates)}
    ahead_deadline = 5.0 + (new_line - SR // 2 - 100) / SR
    assert plans[(0, "stretch")] == 5.0
    assert plans[(1, "generate")] == pytest.approx(ahead_deadline - estimates.budget(planner.generation_key(live)))
    late = {(job.bar, job.kind) for job, _ in jobs(live, now=ahead_deadline - 0.3, estimates=estimates)}
    assert (1, "stretch") in late and (1, "generate") not in late, "no time to remake: stretched instead"


class WatchedStore(MemoryStore):
    """A MemoryStore that, after every change, records the first sample from `watch_from` on
    that no window covers (what a shim reading at that moment would find missing)."""

    def __init__(self):
        super().__init__()
        self.watch_from, self.first_gaps = None, []

    def _record(self):
        if self.watch_from is None:
            return
        pos = self.watch_from
        while True:
            ends = [w["start"] + w["frames"] for w in self.windows.values() if w["start"] <= pos < w["start"] + w["frames"]]
            if not ends:
                break
            pos = max(ends)
        self.first_gaps.append(pos)

    def publish(self, **kwargs):
        window_id = super().publish(**kwargs)
        self._record()
        return window_id

    def withdraw(self, window_id):
        dropped = super().withdraw(window_id)
        self._record()
        return dropped


@pytest.mark.parametrize("tempo", [250.0, 230.0])
def test_windows_move_without_a_gap_the_shim_could_read(tempo):
    """A tempo change while the shim plays: every window is re-placed, and at no moment in
    between does the published timeline have a hole before the end of what was covered (a
    block read then would underrun). Faster: each bar line comes earlier; slower: later."""
    s = new_session(1, SR, 1, WatchedStore(), offline=False, generator="loop", lookahead=3)
    transport(s, 0, grid=1)
    for bar in range(4):
        give_window(s, bar)
    pos = SR // 2
    covered = 4 * SR
    s.store.watch_from = pos
    transport(s, pos, tempo=tempo, beats=2.0, grid=2)
    assert len(s.store.first_gaps) >= 8, "every window was moved (published, then the old one withdrawn)"
    assert min(s.store.first_gaps) >= min(covered, s.store.first_gaps[-1]), s.store.first_gaps
    ends = sorted(w["start"] + w["frames"] for w in s.store.windows.values())
    assert s.store.first_gaps[-1] == ends[-1] and len(ends) == 4, "the old placements are all withdrawn"


def test_a_store_too_full_to_hold_both_placements_still_moves_every_window():
    class TightStore(MemoryStore):
        def publish(self, **kwargs):
            if len(self.windows) >= 5:
                raise StoreFull("full")
            return super().publish(**kwargs)

    s = new_session(1, SR, 1, TightStore(), offline=False, generator="loop", lookahead=3)
    transport(s, 0, grid=1)
    for bar in range(4):
        give_window(s, bar)
    transport(s, SR // 2, tempo=200.0, beats=2.0, grid=2)
    line = SR // 2 + round(2 * 60 / 200 * SR)
    assert sorted((w["start"], w["frames"]) for w in s.store.windows.values()) == [
        (0, line)] + [(line + k * round(4 * 60 / 200 * SR), round(4 * 60 / 200 * SR)) for k in range(3)]


def test_offline_a_window_waits_while_a_window_it_hears_is_a_stand_in():
    s = session(offline=True, lookahead=2)
    transport(s, 2 * SR, grid=1)
    give_window(s, 2), give_window(s, 3)
    transport_state.on_audio(s, InputBlock(epoch=0, pos_samples=0, input=np.zeros((1, 3 * SR), np.float32)))
    transport(s, 2 * SR + 100, tempo=200.0, beats=8.0 + 100 / 2000, grid=2)
    planned = {(job.bar, job.kind) for job, _ in jobs(s, now=0.0)}
    assert planned == {(2, "stretch")}, "window 3 hears bar 2, which waits for its stand-in"


def test_quantized_positions_at_a_constant_tempo_keep_the_grid():
    s = session(offline=True)
    transport(s, -768, tempo=100.0, beats=round(-768 * 100 / 60 / SR * 1920) / 1920, grid=1)
    grid = s.grid
    for pos in range(256, 20 * SR, 1024):
        exact = pos * 100 / 60 / SR
        transport(s, pos, tempo=100.0, beats=round(exact * 1920) / 1920, grid=1)
        assert s.grid is grid
    assert grid.bar_start_sample(5) == 5 * 4 * 60 * SR // 100
