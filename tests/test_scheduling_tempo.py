"""Tempo and meter changes in the scheduler (in-process, real shm store): small deviations move
windows without remaking them, large ones get time-stretched stand-ins where there is no time to
remake them and are remade where there is; meter changes take effect at the next bar line;
windows clipped at a loop end; estimates follow measured generation times."""
from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from bridge.convert import TEMPO_RANGE, new_session
from bridge.layout import const
from bridge.shm import TimelineReader, TimelineStore
from engine.loop_generator import LoopGenerator
from engine.planner import Estimates
from engine.publisher import WindowKind
from engine import scheduler
from engine.scheduler import Scheduler
from engine.session import REALTIME_DRIFT_SECONDS
from engine.timeline import GridTracker
from engine.transport import InputBlock, TransportSnapshot
from tests.conftest import closing_factory, wait_until

SR = 8000


class SlowLoop(LoopGenerator):
    """The loop generator taking `delay` seconds per window, like a model would."""

    def __init__(self, delay: float):
        self.delay = delay

    def generate(self, request):
        time.sleep(self.delay)
        return super().generate(request)


@pytest.fixture
def slow_model(monkeypatch):
    """Make the "diffusion" generator a SlowLoop of the given delay (set before the first use)."""
    fake = types.ModuleType("engine.diffusion")
    fake.delay = 0.0
    fake.load_builtin = lambda backend="auto": SlowLoop(fake.delay)
    monkeypatch.setitem(sys.modules, "engine.diffusion", fake)
    return fake


class Live:
    """One session driven like a realtime (or offline) shim: transports with any tempo/meter."""

    def __init__(self, offline=False, **params):
        self.entries: list[dict] = []
        self.scheduler = Scheduler(on_window=lambda s, e: self.entries.append(e))
        self.store = TimelineStore(0x7e3f0, 1, SR)
        self.session = new_session(0x7e3f0, SR, 1, self.store, offline=offline, **{"generator": "loop", **params})
        self.offline = offline
        self.scheduler.add(self.session)
        self.scheduler.start()
        self.reader = TimelineReader(self.store.name)

    def transport(self, pos, beats, tempo, tsig=(4, 4), epoch=0, bar_start=None, loop=None):
        bar_beats = tsig[0] * 4 / tsig[1]
        self.scheduler.on_transport(self.session, TransportSnapshot(
            epoch=epoch, playing=True, tempo=tempo, pos_samples=pos, pos_beats=beats,
            bar_start_beats=beats // bar_beats * bar_beats if bar_start is None else bar_start,
            tsig_num=tsig[0], tsig_den=tsig[1], loop=loop, offline=self.offline), time.monotonic())

    def audio(self, start, frames, epoch=0):
        ramp = np.linspace(-0.5, 0.5, frames, dtype=np.float32)[None]
        self.scheduler.on_audio(self.session, InputBlock(epoch=epoch, pos_samples=start, input=ramp))

    def last(self, bar, **match):
        found = [e for e in self.entries if e["bar_index"] == bar and all(e[k] == v for k, v in match.items())]
        return found[-1] if found else None

    def close(self):
        self.scheduler.stop()
        self.reader.close()
        self.store.close()


@pytest.fixture
def live_factory():
    yield from closing_factory(Live)


def sample_of(beat, tempo, beat0=0.0, sample0=0):
    """The host sample of `beat` at a constant tempo from the point (sample0, beat0)."""
    return sample0 + int(np.floor((beat - beat0) * 60 / tempo * SR + 0.5))


def bar_line(bar, tempo, beat0=0.0, sample0=0):
    return sample_of(4 * bar, tempo, beat0, sample0)


def test_a_small_tempo_change_moves_windows_without_remaking_them(live_factory):
    live = live_factory(lookahead=2)
    live.audio(0, 4 * SR)
    live.transport(0, 0.0, 240.0)                       # 1 bar = 1 s = 8000 samples
    assert wait_until(lambda: live.last(2) is not None)
    pos = SR // 2                                        # half way through bar 0
    tempo = 240.0 * (1 + REALTIME_DRIFT_SECONDS / 2.5)       # bar 2's end moves by 0.4 x the drift tolerance
    live.transport(pos, 2.0, tempo)
    assert wait_until(lambda: live.last(2, kind="move") is not None)
    for bar in (1, 2):
        moved = live.last(bar, kind="move")
        assert moved["start_sample"] == bar_line(bar, tempo, 2.0, pos)
        assert moved["frames"] == bar_line(bar + 1, tempo, 2.0, pos) - moved["start_sample"]
        assert moved["tempo"] == 240.0, "moved, not remade: the audio is the one made at 240 BPM"
    time.sleep(0.2)
    assert not [e for e in live.entries if e["kind"] == "generate" and e["tempo"] == tempo], "remade for a small change"
    # the playing window keeps its start and ends at the new bar line
    playing = live.last(0, kind="move")
    assert playing["start_sample"] == 0 and playing["frames"] == bar_line(1, tempo, 2.0, pos)
    # the shm holds exactly one window per bar, where the new grid wants it
    slots = sorted((s.start_sample, s.frames) for s in live.reader.slots())
    assert slots == [(0, bar_line(1, tempo, 2.0, pos))] + [
        (bar_line(b, tempo, 2.0, pos), bar_line(b + 1, tempo, 2.0, pos) - bar_line(b, tempo, 2.0, pos)) for b in (1, 2)]


def test_a_large_tempo_change_stretches_what_cannot_be_remade_in_time(live_factory, slow_model):
    slow_model.delay = 0.5                               # a window takes 0.5 s to make
    live = live_factory(lookahead=2, generator="diffusion")
    live.audio(0, 4 * SR)
    live.transport(0, 0.0, 240.0)
    assert wait_until(lambda: live.last(2, window=WindowKind.GENERATED) is not None, timeout=10)
    # 0.4 s before bar 2 the tempo drops to 200 BPM: bar 2 starts in 0.48 s, too soon to remake
    # it (0.5 s) but not to stretch it; bar 3 (1.68 s away) is remade at the new tempo.
    pos = 2 * SR - 2 * SR // 5
    live.transport(pos, 8.0 - 1.6, 200.0)
    new_line = lambda bar: bar_line(bar, 200.0, 6.4, pos)  # noqa: E731
    assert wait_until(lambda: live.last(2, kind="stretch") is not None, timeout=3)
    stretched = live.last(2, kind="stretch")
    assert stretched["window"] is WindowKind.STRETCHED and stretched["tempo"] == 200.0
    assert stretched["start_sample"] == new_line(2) and stretched["frames"] == new_line(3) - new_line(2)
    covering = [s for s in live.reader.slots() if s.start_sample == new_line(2)]
    assert covering and covering[-1].flags == const("LD_WINDOW_STRETCHED") and covering[-1].tempo_bpm == 200.0
    # keep the transport flowing towards bar 3 so its remake comes due, then it is made at 200 BPM
    started = time.monotonic()

    def play_on():
        now = pos + int((time.monotonic() - started) * SR)
        live.transport(now, 6.4 + (now - pos) / SR * 200 / 60, 200.0)
        return live.last(3, kind="generate", tempo=200.0) is not None
    assert wait_until(play_on, timeout=3)
    remade = live.last(3, kind="generate", tempo=200.0)
    assert remade["window"] is WindowKind.GENERATED and remade["lead_seconds"] > 0
    assert remade["start_sample"] == new_line(3)


def test_meter_changes_take_effect_at_the_next_bar_line():
    tracker = GridTracker(48000, 120.0, TEMPO_RANGE)
    tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
    # at beat 9 (in the bar 8..12) the host switches to 3/4 and says the bar started at 9
    grid = tracker.update(tempo=120, tsig_num=3, tsig_den=4, pos_samples=9 * 24000, pos_beats=9.0,
                          bar_start_beats=9.0, reanchor=True)
    assert [grid.bar_start_beat(grid.bar_at_sample(s * 24000)) for s in (9, 12, 14, 15)] == [9.0, 12.0, 12.0, 15.0]
    # the phase holds while the host keeps reporting bars on its own old count
    assert tracker.update(tempo=120, tsig_num=3, tsig_den=4, pos_samples=13 * 24000, pos_beats=13.0,
                          bar_start_beats=12.0) is grid
    grid = tracker.update(tempo=120, tsig_num=7, tsig_den=8, pos_samples=16 * 24000, pos_beats=16.0,
                          bar_start_beats=15.0, reanchor=True)
    assert [grid.bar_start_beat(b) for b in range(grid.bar_at_sample(18 * 24000), grid.bar_at_sample(18 * 24000) + 3)] \
        == [18.0, 21.5, 25.0]
    # a change right on a bar line starts there
    grid = tracker.update(tempo=120, tsig_num=6, tsig_den=8, pos_samples=18 * 24000, pos_beats=18.0,
                          bar_start_beats=18.0, reanchor=True)
    assert grid.bar_start_sample(grid.bar_at_sample(18 * 24000)) == 18 * 24000 and grid.bar_beats == 3.0


def test_windows_after_a_meter_change_start_on_the_new_bar_lines(live_factory):
    live = live_factory(offline=True)
    live.audio(0, 10 * SR)
    live.transport(0, 0.0, 240.0)
    assert wait_until(lambda: live.last(1) is not None)
    live.transport(SR // 4, 1.0, 240.0, tsig=(7, 8), epoch=1)   # 7/8 from beat 1, mid-bar: from beat 4 on
    live.audio(SR // 4, 4 * SR, epoch=1)
    assert wait_until(lambda: len([e for e in live.entries if e["epoch"] == 1]) >= 3)
    starts = sorted({e["start_beat"] for e in live.entries if e["epoch"] == 1})
    assert starts[:3] == [0.5, 4.0, 7.5]
    for e in live.entries:
        if e["epoch"] == 1:
            assert e["start_sample"] == sample_of(e["start_beat"], 240.0)
            assert e["frames"] == sample_of(e["start_beat"] + 3.5, 240.0) - e["start_sample"]


def test_estimates_follow_measurements():
    estimates = Estimates(alpha=0.5)
    key = ("loop", 1)
    assert estimates.seconds(key) > 0
    estimates.add(key, 0.1)
    assert estimates.seconds(key) == 0.1
    estimates.add(key, 0.3)
    assert estimates.seconds(key) == pytest.approx(0.2)
    assert estimates.budget(key) > estimates.seconds(key)


class Stepped:
    """A session whose worker thread is not started: the test runs one job at a time, so it
    decides what was made before a transport arrived (what timing decides in a real engine)."""

    def __init__(self, offline: bool):
        self.entries: list[dict] = []
        self.scheduler = Scheduler(on_window=lambda s, e: self.entries.append(e))
        self.store = TimelineStore(0x7e3f1, 1, SR)
        self.session = new_session(0x7e3f1, SR, 1, self.store, offline=offline, generator="loop", lookahead=2)
        self.offline = offline
        self.scheduler.add(self.session)
        assert wait_until(lambda: self.scheduler._worker.generator_ready("loop"))

    def transport(self, pos: int, beats: float, tempo: float, grid: int, epoch: int = 0, loop=None) -> None:
        self.scheduler.on_transport(self.session, TransportSnapshot(
            epoch=epoch, playing=True, tempo=tempo, pos_samples=pos, pos_beats=beats, bar_start_beats=beats // 4 * 4,
            tsig_num=4, tsig_den=4, loop=loop, offline=self.offline, grid=grid), time.monotonic())

    def step(self) -> int | None:
        """Run the job the worker would take now; its bar (None when there is none)."""
        worker = self.scheduler._worker
        with self.scheduler._cond:
            work, _ = worker.next_work(time.monotonic())
        if work is None:
            return None
        worker._run(*work)
        return work[0].bar

    def close(self):
        self.scheduler.generators.join()
        self.store.close()


def played_up_to_bar_4(offline: bool) -> Stepped:
    """Windows 0-3 made at 240 BPM, input heard to bar 4, and the tempo changing to 300 BPM
    exactly at bar 4's line before the worker took window 4 (an offline shim that went through
    bar 3 faster than the engine got to it)."""
    s = Stepped(offline)
    s.scheduler.on_audio(s.session, InputBlock(epoch=0, pos_samples=0,
                                               input=np.full((1, 4 * SR), 0.1, np.float32)))
    s.transport(0, 0.0, 240.0, grid=1)
    while s.session.windows.keys() != {0, 1, 2}:
        assert s.step() in (0, 1, 2)
    s.transport(3 * SR - 512, 12.0 - 0.256, 240.0, grid=1)
    assert s.step() == 3 and 4 not in s.session.windows
    s.transport(4 * SR, 16.0, 300.0, grid=2)
    return s


def test_offline_a_change_on_a_bar_line_waits_for_the_window_playing_there():
    """What plays after a step on a bar line must not depend on how far the engine had got:
    realtime made that bar's window lookahead windows earlier and stretches it; offline the
    change waits until it is made for the old grid, then it is stretched the same way."""
    s = played_up_to_bar_4(offline=True)
    try:
        assert s.session.grid_seq == 1 and s.session.held, "the change was applied before window 4 was made"
        s.scheduler.release_held(time.monotonic())
        assert s.session.grid_seq == 1, "released while window 4 is still to be made"
        assert s.step() == 4
        s.scheduler.release_held(time.monotonic())
        assert s.session.grid_seq == 2 and not s.session.held
        while s.step() is not None:
            pass
        made = [e for e in s.entries if e["bar_index"] == 4 and e["kind"] in ("generate", "stretch")]
        assert [(e["kind"], e["tempo"]) for e in made] == [("generate", 240.0), ("stretch", 300.0)]
        line = bar_line(4, 240.0)
        assert made[-1]["start_sample"] == line and made[-1]["frames"] == bar_line(5, 300.0, 16.0, line) - line
    finally:
        s.close()


def test_realtime_never_holds_a_change_and_offline_holds_it_for_at_most_hold_seconds(caplog):
    realtime = played_up_to_bar_4(offline=False)
    offline = played_up_to_bar_4(offline=True)
    try:
        assert realtime.session.grid_seq == 2 and not realtime.session.held
        # a window that never comes (a stuck generator) holds the change only so long
        offline.scheduler.release_held(time.monotonic() + scheduler.HOLD_SECONDS - 1)
        assert offline.session.grid_seq == 1
        offline.scheduler.release_held(time.monotonic() + scheduler.HOLD_SECONDS + 1)
        assert offline.session.grid_seq == 2 and not offline.session.held
        assert "applied without it" in caplog.text
    finally:
        realtime.close()
        offline.close()
