"""The context source in the engine (engine/context_source.py), with the loop generator and a
real shm store: the main input, the sidechain or both; auto's choice per bar line and its
hysteresis; a switch of the parameter taking effect at the next bar line.

With lookahead 1 the window at bar b has its horizon at b: with context_bars 1 the loop
generator repeats bar b-1 of the chosen source, with context_bars 2 the last bar of [b-2, b)
that has sound. So what is published at bar b says which source window b heard."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from bridge.client import Client
from bridge.layout import const
from bridge.protocol import MSG
from engine.anchoring import SOUNDING_RMS as SILENT_RMS
from engine.context_source import HOLD_BARS, sounds
from engine.dsp import SEAM_SECONDS
from engine.publisher import WindowKind
from engine.transport import InputBlock
from tests.conftest import closing_factory, wait_until
from tests.test_scheduler import SR, Recorder, Rig

SEAM = round(SEAM_SECONDS * SR)
SEAM_FRAMES = round(SEAM_SECONDS * 44100)


class SidechainRig(Rig):
    """Rig whose AUDIO carries a sidechain: `sidechain` None = the host has no aux bus."""

    def __init__(self, main=True, sidechain_bars: set[int] | None = None, **params):
        super().__init__(**params)
        if not main:
            self.input[:] = 0
        self.sidechain = None
        if sidechain_bars is not None:
            # main + sidechain, and their seams, stay under the engine's -0.1 dBFS limiter
            self.sidechain = np.random.default_rng(1).uniform(-0.3, 0.3, self.input.shape).astype(np.float32)
            for bar in range(24):
                if bar not in sidechain_bars:
                    self.sidechain[:, self.bar(bar):self.bar(bar + 1)] = 0

    def audio(self, start, end, epoch=0):
        side = None if self.sidechain is None else self.sidechain[:, start:end]
        self.scheduler.on_audio(self.session, InputBlock(epoch=epoch, pos_samples=start,
                                                         input=self.input[:, start:end], sidechain=side))

    def heard(self, source, bar):
        audio = {"main": self.input, "sidechain": self.sidechain}[source]
        return audio[:, self.bar(bar):self.bar(bar + 1)]

    def played(self, bar):
        """Bar `bar` as published, after its seam fade-in."""
        return self.published(bar)[:, SEAM:]


@pytest.fixture
def rig_factory():
    yield from closing_factory(SidechainRig)


def test_silence_threshold():
    quiet = np.full((2, 1000), SILENT_RMS * 0.9, np.float32)
    assert not sounds(quiet) and sounds(quiet / 0.9 * 1.01) and not sounds(np.zeros((2, 0), np.float32))


@pytest.mark.parametrize("source", ["auto", "sidechain"])
def test_main_silent_sidechain_playing_the_windows_continue_the_sidechain(rig_factory, source):
    rig = rig_factory(main=False, sidechain_bars=set(range(24)), lookahead=1, context_bars=1, context_source=source)
    rig.play_bars(0, 8)
    assert wait_until(lambda: rig.window(8) is not None)
    for bar in range(1, 9):
        assert rig.window(bar)["window"] is WindowKind.GENERATED
        np.testing.assert_array_equal(rig.played(bar), rig.heard("sidechain", bar - 1)[:, SEAM:])
    assert rig.session.context_in_use == "sidechain"


@pytest.mark.parametrize("sidechain_bars", [None, set()], ids=["absent", "silent"])
def test_auto_with_an_absent_or_silent_sidechain_uses_the_main_input(rig_factory, sidechain_bars):
    rig = rig_factory(sidechain_bars=sidechain_bars, lookahead=1, context_bars=1)
    rig.play_bars(0, 6)
    assert wait_until(lambda: rig.window(6) is not None)
    for bar in range(1, 7):
        np.testing.assert_array_equal(rig.played(bar), rig.heard("main", bar - 1)[:, SEAM:])
    assert rig.session.context_in_use == "main"


@pytest.mark.parametrize("source", ["main", "both"])
def test_main_ignores_a_playing_sidechain_and_both_sums_them(rig_factory, source):
    rig = rig_factory(sidechain_bars=set(range(24)), lookahead=1, context_bars=1, context_source=source)
    rig.play_bars(0, 5)
    assert wait_until(lambda: rig.window(5) is not None)
    for bar in range(1, 6):
        heard = rig.heard("main", bar - 1) + (rig.heard("sidechain", bar - 1) if source == "both" else 0)
        np.testing.assert_array_equal(rig.played(bar), heard[:, SEAM:])
    assert rig.session.context_in_use == source


def test_auto_switches_at_bar_lines_and_one_quiet_bar_does_not_flip_it(rig_factory, caplog):
    """The sidechain sounds in bars 4-6 and 8-9 (bar 7 quiet); the main input always."""
    assert HOLD_BARS == 2
    rig = rig_factory(sidechain_bars={4, 5, 6, 8, 9}, lookahead=1, context_bars=2)
    with caplog.at_level(logging.INFO, logger="livediff.scheduler"):
        rig.play_bars(0, 14)
        assert wait_until(lambda: rig.window(14) is not None)
    # window b (horizon b) takes the sidechain iff it sounded in one of bars b-2, b-1;
    # the loop generator then holds the last of those two bars that has sound
    expected = {**{b: ("main", b - 1) for b in range(2, 6)}, 5: ("sidechain", 4), 6: ("sidechain", 5),
                7: ("sidechain", 6), 8: ("sidechain", 6), 9: ("sidechain", 8), 10: ("sidechain", 9),
                11: ("sidechain", 9), **{b: ("main", b - 1) for b in range(12, 15)}}
    for bar, (source, heard) in expected.items():
        np.testing.assert_array_equal(rig.played(bar), rig.heard(source, heard)[:, SEAM:], err_msg=f"bar {bar}")
    changes = [r.getMessage() for r in caplog.records if "context from the" in r.getMessage()]
    assert changes == [f"session {rig.session.instance:016x}: context from the sidechain from bar 5 on "
                       "(context_source auto)",
                       f"session {rig.session.instance:016x}: context from the main input from bar 12 on "
                       "(context_source auto)"]


def test_switching_the_source_takes_effect_at_the_next_bar_line(rig_factory):
    """Mid-bar 4 the producer switches from main to sidechain: bar 4 plays to its end as made
    (main), bar 5 on continues the sidechain."""
    rig = rig_factory(sidechain_bars=set(range(24)), lookahead=1, context_bars=1, context_source="main")
    rig.play_bars(0, 4)
    rig.transport(rig.bar(4))
    rig.audio(rig.bar(4), rig.bar(4) + rig.bar(1) // 2)
    assert wait_until(lambda: rig.window(4) is not None)
    playing = rig.window(4)["window_id"]
    rig.transport(rig.bar(4) + rig.bar(1) // 2)
    rig.scheduler.on_params(rig.session, {"context_source": "sidechain"})
    rig.audio(rig.bar(4) + rig.bar(1) // 2, rig.bar(5))
    rig.play_bars(5, 8)
    assert wait_until(lambda: rig.window(8) is not None)
    assert [w["window_id"] for w in rig.windows if w["bar_index"] == 4] == [playing], "the playing bar was remade"
    np.testing.assert_array_equal(rig.played(4), rig.heard("main", 3)[:, SEAM:])
    for bar in range(5, 9):
        np.testing.assert_array_equal(rig.played(bar), rig.heard("sidechain", bar - 1)[:, SEAM:])


def test_a_switch_remakes_the_windows_made_ahead_but_not_the_playing_one(rig_factory, monkeypatch):
    from engine import generators
    recorder = Recorder()
    monkeypatch.setattr(generators, "_LOADERS", dict(generators._LOADERS))
    generators.register("recorder", lambda: recorder)
    rig = rig_factory(sidechain_bars=set(range(24)), generator="recorder", lookahead=3, context_bars=1,
                      context_source="main")
    rig.play_bars(0, 5)
    assert wait_until(lambda: rig.window(7) is not None)      # windows 5, 6, 7 made ahead of bar 4
    made_before = len(recorder.requests)
    rig.transport(rig.bar(4) + 100)
    rig.scheduler.on_params(rig.session, {"context_source": "sidechain"})
    assert wait_until(lambda: {r.bar_index for r in recorder.requests[made_before:]} >= {5, 6})
    remade = recorder.requests[made_before:]
    assert 4 not in {r.bar_index for r in remade}
    for request in remade:      # horizon b - 2: input_context ends with sidechain bar b - 3
        newest = rig.heard("sidechain", request.bar_index - 3)
        np.testing.assert_array_equal(request.input_context[:, -newest.shape[1]:], newest)


# --- through `livediff serve` ----------------------------------------------------------------

RATE, TEMPO = 44100, 120.0
BAR = RATE * 2


def feed(client, bars: range, main: np.ndarray, sidechain: np.ndarray | None) -> None:
    for b in bars:
        client.transport(pos_samples=b * BAR, tempo=TEMPO, offline=True)
        for pos in range(b * BAR, (b + 1) * BAR, 16384):
            end = min(pos + 16384, (b + 1) * BAR)
            client.audio(pos_samples=pos, tempo=TEMPO, audio=main[:, pos:end],
                         sidechain=None if sidechain is None else sidechain[:, pos:end])


def status_source(client, wanted: str, timeout: float = 10.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.recv(0.1)
        if reply and reply["type"] == MSG["status"] and reply.get("context_source") == wanted:
            return True
    return False


def window_audio(reader, bar: int, timeout: float = 10.0) -> np.ndarray:
    assert wait_until(lambda: reader.render(0, bar * BAR, BAR)[1].all(), timeout), f"bar {bar} never published"
    return reader.render(0, bar * BAR, BAR)[0]


def test_status_reports_the_source_the_context_comes_from(engine):
    client = Client(engine.endpoint)
    try:
        client.hello(RATE, 2, offline=True, generator=const("LD_GENERATOR_LOOP"), lookahead=1, context_bars=1)
        assert status_source(client, "main"), "STATUS does not say CONTEXT_SOURCE main before any sidechain"
        noise = np.random.default_rng(3).uniform(-0.5, 0.5, (2, 4 * BAR)).astype(np.float32)
        feed(client, range(4), np.zeros_like(noise), noise)
        assert status_source(client, "sidechain")
    finally:
        client.bye()
        client.close()


def test_serve_sidechain_file_is_every_sessions_sidechain_by_song_position(engine_factory, tmp_path):
    from pedalboard.io import AudioFile
    from bridge.shm import TimelineReader
    music = np.random.default_rng(4).uniform(-0.5, 0.5, (1, 5 * BAR)).astype(np.float32)   # mono file, stereo session
    path = tmp_path / "sidechain.wav"
    with AudioFile(str(path), "w", RATE, 1, bit_depth=32) as f:
        f.write(music)
    engine = engine_factory("--sidechain-file", str(path))
    client = Client(engine.endpoint)
    try:
        welcome = client.hello(RATE, 2, offline=True, generator=const("LD_GENERATOR_LOOP"), lookahead=1, context_bars=1)
        reader = TimelineReader(welcome["shm_name"])
        noise = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 6 * BAR)).astype(np.float32)
        for b in range(6):      # as an offline shim: each bar's window before the next bar
            feed(client, range(b, b + 1), np.zeros_like(noise), noise)    # the host's own sidechain is not used
            if b:
                expected = np.repeat(music[:, (b - 1) * BAR:b * BAR], 2, axis=0)
                np.testing.assert_array_equal(window_audio(reader, b)[:, SEAM_FRAMES:], expected[:, SEAM_FRAMES:])
        reader.close()
    finally:
        client.bye()
        client.close()


def test_serve_refuses_an_unreadable_sidechain_file(tmp_path, private_endpoint):
    import subprocess
    import sys
    bad = tmp_path / "nope.wav"
    bad.write_bytes(b"not audio")
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--endpoint", private_endpoint,
                             "--sidechain-file", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"sidechain file {bad} cannot be read" in result.stderr and "allowed: WAV" in result.stderr
