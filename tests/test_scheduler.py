"""The scheduler in-process with a real shm store and the loop generator: preroll, context
horizon, per-window seeds, baked seams, waiting for input offline, deadlines in realtime,
a stopped transport, odd meters and tempos, and a generator that cannot load."""
from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from bridge.convert import new_session
from bridge.shm import TimelineReader, TimelineStore
from engine.context import context_sources, window_seed
from engine.dsp import PEAK_CEILING, SEAM_SECONDS, crossfade, limit
from engine.publisher import WindowKind
from engine.scheduler import Scheduler
from engine.session import InputStore
from engine.timeline import Grid
from engine.transport import InputBlock, TransportSnapshot
from tests.conftest import closing_factory, wait_until
from tests.test_scheduling_tempo import Stepped

SR = 8000  # small rate: quick, same math


class Rig:
    """A Scheduler with one session, driven the way the server drives it."""

    def __init__(self, offline=True, tempo=120.0, tsig=(4, 4), **params):
        self.windows, self.problems = [], []
        self.scheduler = Scheduler(on_window=lambda s, e: self.windows.append(e),
                                   on_problem=lambda s, kind, message: self.problems.append((kind, message)))
        self.store = TimelineStore(0x5c4ed, 2, SR)
        self.session = new_session(0x5c4ed, SR, 2, self.store, offline=offline, **{"generator": "loop", **params})
        self.offline, self.tempo, self.tsig = offline, tempo, tsig
        self.grid = Grid.constant(SR, tempo, *tsig, 0, 0.0)
        self.bar = lambda b: self.grid.bar_start_sample(b)
        self.input = np.random.default_rng(0).uniform(-0.4, 0.4, (2, self.bar(24))).astype(np.float32)
        self.scheduler.add(self.session)
        self.scheduler.start()
        self.reader = TimelineReader(self.store.name)

    def transport(self, pos, playing=True, epoch=0):
        beats = pos * self.tempo / 60 / SR
        bar_beats = self.grid.bar_beats
        self.scheduler.on_transport(self.session, TransportSnapshot(
            epoch=epoch, playing=playing, tempo=self.tempo, pos_samples=pos, pos_beats=beats,
            bar_start_beats=beats // bar_beats * bar_beats, tsig_num=self.tsig[0], tsig_den=self.tsig[1],
            offline=self.offline), time.monotonic())

    def audio(self, start, end, epoch=0):
        self.scheduler.on_audio(self.session, InputBlock(epoch=epoch, pos_samples=start, input=self.input[:, start:end]))

    def play_bars(self, first, last):
        """Play bars [first, last) as an offline shim does: transport and the bar's input, then
        wait for the window that plays there before moving on."""
        for b in range(first, last):
            self.transport(self.bar(b))
            self.audio(self.bar(b), self.bar(b + 1))
            span = self.session.setting("window_bars")
            assert wait_until(lambda: self.window(b - b % span) is not None), f"no window for bar {b}"

    def window(self, bar):
        found = [w for w in self.windows if w["bar_index"] == bar]
        return found[-1] if found else None

    def published(self, bar):
        out, covered = self.reader.render(self.session.epoch, self.bar(bar), self.bar(bar + 1) - self.bar(bar))
        assert covered.all(), f"bar {bar} not fully published"
        return out

    def close(self):
        self.scheduler.stop()
        self.reader.close()
        self.store.close()


@pytest.fixture
def rig_factory():
    yield from closing_factory(Rig)


# --- pure functions ---------------------------------------------------------------------

def test_window_seed_depends_on_seed_and_bar_only():
    assert window_seed(7, 3) == window_seed(7, 3)
    seeds = {window_seed(s, b) for s in range(4) for b in range(-4, 60)}
    assert len(seeds) == 4 * 64 and all(0 <= x < 2 ** 31 for x in seeds)


def test_seam_crossfades_keep_the_level_whatever_the_two_sides_share():
    n = 400
    out = crossfade(np.ones((1, n), np.float32), np.zeros((1, n + 10), np.float32))
    assert out[0, 0] == 1 and out.shape == (1, n + 10) and (out[0, n:] == 0).all()
    assert np.all(np.diff(out[0, :n]) <= 0)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 1, 200_000)).astype(np.float32)
    assert np.mean(crossfade(a, b) ** 2) == pytest.approx(1.0, rel=0.02), "uncorrelated power is not kept"
    # the same music on both sides (consecutive windows of a loop): amplitude kept, no +3 dB bump
    np.testing.assert_allclose(crossfade(a[:, :n], a), a, atol=1e-6)
    equal_power = crossfade(a[:, :n], a, r=0.0)
    assert np.abs(equal_power[:, :n]).max() > 1.3 * np.abs(a[:, :n]).max(), "what an equal-power fade would do"
    # in between (half the material shared): the power stays within 0.5 dB through the fade
    shared = rng.standard_normal((1, 200_000)).astype(np.float32)
    x, y = (shared + rng.standard_normal((1, 200_000)).astype(np.float32) for _ in range(2))
    blend = crossfade(x, y)
    for part in np.array_split(blend[0], 10):
        assert abs(10 * np.log10(np.mean(part ** 2) / np.mean(x ** 2))) < 0.5


def test_the_limiter_holds_published_audio_under_minus_0_1_dbfs():
    loud = (1.4 * np.sin(np.linspace(0, 200, 20_000))[None].repeat(2, axis=0)).astype(np.float32)
    held = limit(loud, PEAK_CEILING)
    assert np.abs(held).max() <= PEAK_CEILING and held.shape == loud.shape
    quiet = 0.5 * loud
    np.testing.assert_array_equal(limit(quiet, PEAK_CEILING), quiet)


def test_context_sources_follow_the_horizon_rule():
    everything = lambda b: True
    nothing = lambda b: False
    # lookahead 2, window 1 bar, 2 context bars: window 5 has horizon 4
    assert context_sources(5, 4, 2, everything) == [(3, "input"), (4, "generated")]
    assert context_sources(5, 4, 2, nothing) == [(2, "input"), (3, "input")]
    # lookahead 1: the horizon is the window itself, everything is input
    assert context_sources(5, 5, 3, nothing) == [(2, "input"), (3, "input"), (4, "input")]
    # lookahead 3: two generated bars; one missing means all input up to the horizon
    assert context_sources(5, 3, 2, everything) == [(3, "generated"), (4, "generated")]
    assert context_sources(5, 3, 2, lambda b: b == 4) == [(1, "input"), (2, "input")]


def test_input_store_by_position():
    store = InputStore(2, keep_frames=100_000)
    store.write(8000, np.ones((2, 500), np.float32))  # crosses a chunk boundary (8192)
    out = store.read(7900, 800)
    assert (out[:, :100] == 0).all() and (out[:, 100:600] == 1).all() and (out[:, 600:] == 0).all()


# --- the scheduler running ---------------------------------------------------------------

def test_offline_windows_preroll_context_seeds_and_seams(rig_factory):
    rig = rig_factory(seed=7)
    rig.play_bars(0, 6)
    assert wait_until(lambda: rig.window(7) is not None)
    bar0 = rig.input[:, :rig.bar(1)]
    seam = round(SEAM_SECONDS * SR)
    turn = np.arange(seam) / seam * np.pi / 2
    for bar in (0, 1):
        assert rig.window(bar)["window"] is WindowKind.PREROLL and rig.window(bar)["seed"] is None
        assert not rig.published(bar).any()
    for bar in range(2, 8):
        w = rig.window(bar)
        assert w["window"] is WindowKind.GENERATED and w["seed"] == window_seed(7, bar)
        assert w["start_sample"] == rig.bar(bar) and not w["input_missing"]
        expected = bar0.copy()
        # the first generated window fades in from the silent preroll; later ones continue their
        # predecessor, which played on with the same bar: the seam keeps it as it is
        if bar == 2:
            expected[:, :seam] *= np.sin(turn)
        np.testing.assert_allclose(rig.published(bar), expected, atol=1e-6)


def test_lookahead_one_repeats_the_last_input_bar(rig_factory):
    rig = rig_factory(lookahead=1, context_bars=1)
    rig.play_bars(0, 4)
    assert wait_until(lambda: rig.window(4) is not None)
    assert [rig.window(b)["window"] for b in (0, 1)] == [WindowKind.PREROLL, WindowKind.GENERATED]
    # window b's horizon is b: its context is input bar b-1
    np.testing.assert_array_equal(rig.published(3)[:, round(SEAM_SECONDS * SR):],
                                  rig.input[:, rig.bar(2) + round(SEAM_SECONDS * SR):rig.bar(3)])


def test_offline_waits_for_input_up_to_the_horizon(rig_factory):
    rig = rig_factory()
    rig.transport(0)
    rig.audio(0, rig.bar(1))
    rig.transport(rig.bar(1))                 # playhead in bar 1, whose input has not arrived
    assert wait_until(lambda: rig.window(2) is not None)
    time.sleep(0.3)
    assert rig.window(3) is None, "window 3 (horizon 2) was made before bar 1's input arrived"
    rig.audio(rig.bar(1), rig.bar(2))
    assert wait_until(lambda: rig.window(3) is not None)
    assert not rig.window(3)["input_missing"]


def test_realtime_goes_ahead_at_the_deadline_with_missing_input(rig_factory):
    rig = rig_factory(offline=False)
    rig.transport(0)
    rig.transport(rig.bar(3) - 1)             # one sample before bar 3; no input was ever sent
    assert wait_until(lambda: rig.window(3) is not None)
    assert rig.window(3)["input_missing"] and rig.window(3)["window"] is WindowKind.GENERATED


def test_playback_starting_mid_song_uses_what_was_stored(rig_factory):
    rig = rig_factory()
    rig.transport(rig.bar(3))                 # a new epoch begins at bar 3: earlier input will not come
    assert wait_until(lambda: rig.window(4) is not None)
    assert not rig.window(4)["input_missing"]


def test_stopped_transport_generates_nothing(rig_factory):
    rig = rig_factory()
    rig.transport(0, playing=False)
    rig.audio(0, rig.bar(3))
    time.sleep(0.3)
    assert rig.windows == []
    rig.transport(0, playing=True)
    assert wait_until(lambda: rig.window(0) is not None)


@pytest.mark.parametrize("tempo, tsig, window_bars", [(133.333, (7, 8), 2), (87.3, (3, 4), 1), (171.9, (5, 4), 3)])
def test_windows_start_on_bar_lines_in_odd_meters_and_tempos(rig_factory, tempo, tsig, window_bars):
    rig = rig_factory(tempo=tempo, tsig=tsig, window_bars=window_bars)
    rig.play_bars(0, 3 * window_bars)
    last = 4 * window_bars
    assert wait_until(lambda: rig.window(last) is not None)
    for w in rig.windows:
        assert w["bar_index"] % window_bars == 0
        assert w["start_sample"] == rig.bar(w["bar_index"])
        assert w["frames"] == rig.bar(w["bar_index"] + window_bars) - rig.bar(w["bar_index"])
        assert w["start_beat"] == pytest.approx(w["bar_index"] * rig.grid.bar_beats)


def test_a_seek_starts_a_new_epoch_from_stored_input(rig_factory):
    rig = rig_factory()
    rig.play_bars(0, 5)
    assert wait_until(lambda: rig.window(6) is not None)
    rig.transport(rig.bar(2), epoch=1)         # seek back to bar 2
    assert wait_until(lambda: any(w["epoch"] == 1 and w["bar_index"] == 2 for w in rig.windows))
    w = [w for w in rig.windows if w["epoch"] == 1 and w["bar_index"] == 2][0]
    assert w["window"] is WindowKind.GENERATED and not w["input_missing"]
    # no generated bars in the new epoch yet: the context is the input ending at the horizon
    # (bar 1), so the loop generator repeats input bar 0. A jump back to a place heard is taken
    # as a loop (docs/scheduling.md), so it fades from what played where the host jumped from.
    before = rig.session.history[4].continuation(round(SEAM_SECONDS * SR))
    np.testing.assert_allclose(rig.published(2), crossfade(before, rig.input[:, :rig.bar(1)]), atol=1e-6)


def test_a_generator_that_cannot_load_is_reported_not_replaced(rig_factory, monkeypatch):
    broken = types.ModuleType("engine.diffusion")

    def load_builtin(backend="auto"):
        raise FileNotFoundError("no weights here")
    broken.load_builtin = load_builtin
    monkeypatch.setitem(sys.modules, "engine.diffusion", broken)
    rig = rig_factory(generator="diffusion")
    rig.transport(rig.bar(3))
    rig.audio(0, rig.bar(4))
    assert wait_until(lambda: rig.problems)
    kind, message = rig.problems[0]
    assert kind == "generator" and "diffusion generator is not available" in message
    assert "no weights here" in message
    time.sleep(0.2)
    assert all(w["window"] is WindowKind.PREROLL for w in rig.windows), "fell back to another generator"


# --- the engine's seams to the rest ----------------------------------------------------------

def test_engine_never_imports_bridge():
    """The bridge drives the engine through engine types; nothing in engine/ reaches back."""
    import ast
    from pathlib import Path
    offenders = []
    for path in sorted((Path(__file__).resolve().parents[1] / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "bridge"]
    assert offenders == []


class Recorder:
    """A generator that records its requests and plays the loop generator's answer."""
    name = "recorder"

    def __init__(self):
        from engine.loop_generator import LoopGenerator
        self.requests, self._loop = [], LoopGenerator()

    def generate(self, request):
        self.requests.append(request)
        return self._loop.generate(request)

    def generate_batch(self, requests):
        return [self.generate(r) for r in requests]


def test_registered_generators_serve_sessions_and_get_the_track_as_input_context(rig_factory, monkeypatch):
    from engine import generators
    recorder = Recorder()
    monkeypatch.setattr(generators, "_LOADERS", dict(generators._LOADERS))
    generators.register("recorder", lambda: recorder)
    assert "recorder" in generators.registered()
    rig = rig_factory(generator="recorder", lookahead=3, context_bars=2)
    rig.play_bars(0, 6)
    assert wait_until(lambda: rig.window(7) is not None)
    bar_frames = rig.bar(1)
    for request in recorder.requests:
        # horizon h = b - 2: input_context is input bars h-8 .. h-1 (zeros before the song): the 2
        # context bars, made two phrases long, ending 2 bars before b
        horizon = request.bar_index - 2
        assert request.input_gap_bars == 2 and request.input_context.shape == (2, 8 * bar_frames)
        heard = rig.input[:, max(0, rig.bar(horizon - 8)):rig.bar(horizon)]
        np.testing.assert_array_equal(request.input_context[:, -heard.shape[1]:], heard)
    assert {r.bar_index for r in recorder.requests} >= set(range(3, 8))
    generated = [w for w in rig.windows if w["window"] is WindowKind.GENERATED]
    assert generated and all(w["generator"] == "recorder" for w in generated)


def test_an_unknown_generator_is_reported_by_name(rig_factory):
    rig = rig_factory(generator="banjo")
    rig.transport(rig.bar(3))
    assert wait_until(lambda: rig.problems)
    assert "the banjo generator is not available" in rig.problems[0][1] and "registered: " in rig.problems[0][1]


class Loud:
    """A generator that answers with its context's last bar at 1.4x (over full scale)."""
    name = "loud"

    def generate(self, request):
        from engine.loop_generator import LoopGenerator
        return 1.4 * LoopGenerator().generate(request)

    def generate_batch(self, requests):
        return [self.generate(r) for r in requests]


def test_published_windows_never_exceed_minus_0_1_dbfs_and_seams_do_not_raise_the_level(rig_factory, monkeypatch):
    from engine import generators
    monkeypatch.setattr(generators, "_LOADERS", dict(generators._LOADERS))
    generators.register("loud", Loud)
    for name in ("loop", "loud"):
        rig = rig_factory(generator=name)
        tone = 0.95 * np.sin(2 * np.pi * 250 * np.arange(rig.input.shape[1]) / SR)   # 125 cycles per bar
        rig.input = np.stack([tone, tone]).astype(np.float32)
        rig.play_bars(0, 6)
        assert wait_until(lambda: rig.window(7) is not None)
        peaks = [np.abs(rig.published(bar)).max() for bar in range(3, 8)]
        assert max(peaks) <= PEAK_CEILING, (name, peaks)
        if name == "loop":      # consecutive windows hold the same tone: the seams keep its level exactly
            np.testing.assert_allclose(rig.published(4), rig.input[:, :rig.bar(1)], atol=1e-5)


@pytest.mark.parametrize("ahead", [True, False], ids=["made-ahead-of-the-wrap", "made-after-it"])
def test_the_first_window_after_a_loop_wrap_fades_from_the_loop_end_however_late_it_was_made(ahead):
    """A loop of bars 1-2 at 240 BPM (1 bar = 1 s): the window at the loop start of the next
    pass is normally made ahead of the wrap. An offline shim (or a late engine) can wrap first;
    the window made then must still crossfade from what played at the loop end, not fade in
    from silence, so the bounce does not depend on which came first."""
    s = Stepped(offline=True)
    loop = (4.0, 12.0)
    try:
        s.scheduler.on_audio(s.session, InputBlock(epoch=0, pos_samples=0, input=np.full((1, 3 * SR), 0.3, np.float32)))
        s.transport(0, 0.0, 240.0, grid=1, loop=loop)
        while not {0, 1} <= s.session.windows.keys():
            s.step()
        s.transport(2 * SR + 100, 8.05, 240.0, grid=1, loop=loop)      # in the loop's last bar
        while 2 not in s.session.windows or (ahead and 1 not in s.session.ahead):
            s.step()
        assert (1 in s.session.ahead) == ahead
        s.transport(SR, 4.0, 240.0, grid=2, epoch=1, loop=loop)        # the wrap
        while 1 not in s.session.windows:
            assert s.step() is not None
        entered = s.session.windows[1].in_slots[0, :4]
        assert abs(entered[0]) > 0.1, f"the loop start fades in from silence: {entered}"
        assert entered[0] == pytest.approx(s.session.history[2].continuation(1)[0, 0], abs=0.02)
    finally:
        s.close()


def test_variation_reaches_the_windows_made_after_it_changes_and_the_playing_one_plays_on(rig_factory,
                                                                                          monkeypatch):
    """The `variation` parameter (percent) arrives in each window request as a share; a change
    mid-bar remakes the windows made ahead, not the playing one, and keeps the timeline."""
    from engine import generators
    recorder = Recorder()
    monkeypatch.setattr(generators, "_LOADERS", dict(generators._LOADERS))
    generators.register("recorder", lambda: recorder)
    rig = rig_factory(generator="recorder", lookahead=3, context_bars=1)
    rig.play_bars(0, 5)
    assert wait_until(lambda: rig.window(7) is not None)
    assert {r.variation for r in recorder.requests} == {0.0}
    made_before, epoch = len(recorder.requests), rig.session.epoch
    rig.transport(rig.bar(4) + 100)
    rig.scheduler.on_params(rig.session, {"variation": 60})
    assert wait_until(lambda: {r.bar_index for r in recorder.requests[made_before:]} >= {5, 6, 7})
    remade = recorder.requests[made_before:]
    assert 4 not in {r.bar_index for r in remade} and {r.variation for r in remade} == {0.6}
    assert rig.session.epoch == epoch
