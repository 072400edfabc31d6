"""Scripted hosts driving the built CLAP plugin (tests/host/clap_host.py) against a real engine
with the loop generator: start mid-bar, 3/4 and 7/8, a loop over bars 5-8 played three times,
seeks back and forward, stop/start (offline: the shim waits for each window, so runs are exact
and fast), and a 90 -> 140 BPM tempo ramp played in real time.

The input is a sine whose frequency names the song bar it was played in (freq(bar)). With
lookahead 1 and context 1 the loop generator's window at bar b repeats input bar b-1, so what
the shim plays says which window it played: bar b must sound freq(b-1), or silence when bar
b-1 was never heard. That is how "no stale window is ever played" is checked, after every
epoch change. Seam threshold: no sample-to-sample step in the output may exceed
CLICK_FACTOR x the largest step of the input (a pure sine), except where the host itself
jumps (seek, wrap, stop/start) — so seams, loop wraps and fade-ins are all held to it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from bridge.layout import const
from tests.host.clap_host import ClapHost, Transport

RATE = 48000
BLOCK = 512
AMPLITUDE = 0.5
CLICK_FACTOR = 2.0      # crossfades of two sines stay under ~1.5x; a click is far above
SEAM_GUARD = 0.04       # seconds around bar lines left out of the frequency check (crossfades)


def freq(bar: int) -> float:
    """100 + 20 * bar Hz: a whole number of cycles per bar at 120 BPM in 4/4, 3/4 and 7/8, so
    each bar of input starts and ends at phase 0 and repeats without a click."""
    return 100.0 + 20.0 * bar


def input_step_limit(bars: int) -> float:
    return AMPLITUDE * 2 * math.pi * freq(bars) / RATE


@dataclass
class Block:
    epoch: int
    pos: int                 # song position of the first frame (host samples)
    playing: bool
    output: np.ndarray


@dataclass
class Script:
    """One plugin, a constant-tempo song: sample s is at beat s * tempo / 60 / RATE, the song bar
    of a sample fixes the input frequency there."""
    host: ClapHost
    tempo: float = 120.0
    tsig: tuple[int, int] = (4, 4)
    blocks: list[Block] = field(default_factory=list)

    @property
    def bar_beats(self) -> float:
        return self.tsig[0] * 4 / self.tsig[1]

    def bar_line(self, bar: int) -> int:
        return round(bar * self.bar_beats * 60 / self.tempo * RATE)

    def bar_at(self, sample: int) -> int:
        bar = math.floor(sample * self.tempo / 60 / RATE / self.bar_beats)
        return bar + 1 if self.bar_line(bar + 1) <= sample else bar

    def input(self, pos: int, frames: int) -> np.ndarray:
        samples = np.arange(pos, pos + frames)
        bars = np.array([self.bar_at(int(s)) for s in (pos, pos + frames - 1)])
        f = np.where(samples >= self.bar_line(int(bars[1])), freq(int(bars[1])), freq(int(bars[0])))
        x = (AMPLITUDE * np.sin(2 * np.pi * f * samples / RATE)).astype(np.float32)
        return np.stack([x, x])

    def transport(self, pos: int, playing: bool = True, loop: tuple[float, float] | None = None) -> Transport:
        beats = pos * self.tempo / 60 / RATE
        return Transport(playing=playing, tempo=self.tempo, beats=beats, seconds=pos / RATE, tsig=self.tsig,
                         loop=loop)

    def play(self, pos: int, end: int, loop: tuple[float, float] | None = None) -> None:
        """Play song samples [pos, end) in blocks (a block never crosses `end`)."""
        while pos < end:
            frames = min(BLOCK, end - pos)
            out = self.host.process(self.input(pos, frames), self.transport(pos, loop=loop), frames=frames)
            self.blocks.append(Block(self.host.stats()["epoch"], pos, True, out))
            pos += frames

    def stop(self, pos: int, blocks: int) -> None:
        for _ in range(blocks):
            out = self.host.process(self.input(pos, BLOCK), self.transport(pos, playing=False), frames=BLOCK)
            self.blocks.append(Block(self.host.stats()["epoch"], pos, False, out))

    def runs(self) -> list[list[Block]]:
        """Stretches the host played without a jump (same epoch, contiguous, playing)."""
        runs: list[list[Block]] = []
        for block in self.blocks:
            last = runs[-1][-1] if runs else None
            if (block.playing and last is not None and last.playing and block.epoch == last.epoch
                    and block.pos == last.pos + last.output.shape[1]):
                runs[-1].append(block)
            else:
                runs.append([block])
        return [run for run in runs if run[0].playing]


def connect(host: ClapHost, **params: float) -> None:
    host.set_param("generator", const("LD_GENERATOR_LOOP"))
    for name, value in params.items():
        host.set_param(name, value)
    deadline = time.monotonic() + 10
    while True:     # at least one block: the stats' epoch is the audio thread's, set as it processes
        host.process(None, None, frames=BLOCK)
        if host.stats()["engine_state"] == 1:
            break
        assert time.monotonic() < deadline, "the plugin did not connect to the engine"
        time.sleep(0.005)


@pytest.fixture
def offline_script(engine):
    hosts = []

    def make(tempo=120.0, tsig=(4, 4)) -> Script:
        hosts.append(ClapHost(sample_rate=RATE, max_frames=BLOCK, offline=True))
        # preroll silence: the oracle (check_played) tells "never heard" by silence
        connect(hosts[-1], lookahead=1, context_bars=1, preroll=const("LD_PREROLL_SILENCE"))
        return Script(hosts[-1], tempo, tsig)

    yield make
    for host in hosts:
        assert host.stats()["offline_timeouts"] == 0, "the shim gave up waiting for a window"
        host.close()


def session_windows(engine, script: Script) -> list[dict]:
    """Window-log entries of the plugin's session (the last instance that logged) in the epochs
    the script played (and those predicted after them), not those of the connecting blocks."""
    windows = engine.windows()
    first = min(b.epoch for b in script.blocks)
    return [w for w in windows if w["instance"] == windows[-1]["instance"] and w["epoch"] >= first]


# --- what every script must show -----------------------------------------------------------

def check_grid(script: Script, windows: list[dict], loop: tuple[float, float] | None = None) -> None:
    """Every window starts on a host bar line (+-1 sample) and is as long as its bars at the
    tempo (or ends at the loop end when the loop clips it)."""
    assert windows
    loop_end = None if loop is None else round(loop[1] * 60 / script.tempo * RATE)
    for w in windows:
        bar = w["bar_index"]
        assert abs(w["start_sample"] - script.bar_line(bar)) <= 1, w
        end = script.bar_line(bar + 1)
        if loop_end is not None and w["start_sample"] < loop_end < end:
            end = loop_end
        assert abs(w["start_sample"] + w["frames"] - end) <= 1, w
        assert w["tempo"] == script.tempo


def check_played(script: Script) -> None:
    """Bar b sounds freq(b - 1) (the window made from the bar before it), or silence when that
    bar was never heard; no click beyond the seam threshold inside any run."""
    heard: set[int] = set()
    limit = CLICK_FACTOR * input_step_limit(max(script.bar_at(b.pos) for b in script.blocks) + 1)
    guard = round(SEAM_GUARD * RATE)
    for run in script.runs():
        out = np.concatenate([b.output for b in run], axis=1)
        start = run[0].pos
        steps = np.abs(np.diff(out, axis=1))
        assert steps.max() <= limit, f"click of {steps.max():.4f} (threshold {limit:.4f}) at sample " \
                                     f"{start + 1 + int(steps.max(axis=0).argmax())}"
        for bar in range(script.bar_at(start), script.bar_at(start + out.shape[1] - 1) + 1):
            lo = max(script.bar_line(bar), start) + guard
            hi = min(script.bar_line(bar + 1), start + out.shape[1]) - guard
            if hi - lo < RATE // 10:
                continue
            segment = out[0, lo - start:hi - start]
            if bar - 1 in heard or bar > script.bar_at(start):
                spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
                peak = spectrum.argmax() * RATE / len(segment)
                assert abs(peak - freq(bar - 1)) <= 2 * RATE / len(segment), \
                    f"bar {bar} played {peak:.1f} Hz; its window (made from bar {bar - 1}) is {freq(bar - 1)} Hz"
            elif bar > 0:
                assert np.abs(segment).max() < 1e-3, f"bar {bar} played sound made from a bar never heard"
        heard.update(range(script.bar_at(start), script.bar_at(start + out.shape[1] - 1) + 1))


# --- the scripts ---------------------------------------------------------------------------

def test_start_mid_bar(engine, offline_script):
    script = offline_script()
    start = script.bar_line(1) + 3 * RATE // 2 // 2          # 1.5 beats into bar 1
    script.play(start, script.bar_line(5))
    windows = session_windows(engine, script)
    check_grid(script, windows)
    assert min(w["bar_index"] for w in windows) == 1, "the window around the start is the bar it started in"
    check_played(script)


@pytest.mark.parametrize("tsig", [(3, 4), (7, 8), (6, 8)])
def test_odd_meters(engine, offline_script, tsig):
    script = offline_script(tsig=tsig)
    script.play(0, script.bar_line(5))
    check_grid(script, session_windows(engine, script))
    check_played(script)


def test_loop_over_bars_5_to_8_played_three_times(engine, offline_script):
    script = offline_script()
    loop = (16.0, 32.0)                                   # bars 5-8 (1-based) = bars 4..7
    start, end = script.bar_line(4), script.bar_line(8)
    script.play(script.bar_line(2), end, loop)            # enter from bar 2 (1-based 3), play to the loop end
    epochs = [script.blocks[-1].epoch]
    for _ in range(2):                                     # the host wraps: two more passes
        time.sleep(0.3)     # offline runs far ahead of real time: give the engine the time a bar would
        script.play(start, end, loop)
        epochs.append(script.blocks[-1].epoch)
    assert epochs == [epochs[0], epochs[0] + 1, epochs[0] + 2], "the shim bumps the epoch by one per wrap"
    windows = session_windows(engine, script)
    check_grid(script, windows, loop)
    assert all(w["start_sample"] + w["frames"] <= end for w in windows), "a window went past the loop end"
    for epoch in epochs[1:]:
        first = [w for w in windows if w["epoch"] == epoch and w["bar_index"] == 4]
        assert first, f"no window at the loop start in epoch {epoch}"
        assert first[0]["kind"] == "generate"
    # the windows after each wrap were made before it, while the session was still in the
    # previous epoch, inside the loop (predicted), so no pass waited for its first window
    for epoch in epochs[1:]:
        first = [w for w in windows if w["epoch"] == epoch and w["bar_index"] == 4][0]
        assert first["session_epoch"] == epoch - 1 and start <= first["playhead"] < end, first
        assert first["entry"] == 0 and first["frames"] == script.bar_line(5) - start
    check_played(script)


def test_seek_back_and_forward(engine, offline_script):
    script = offline_script()
    script.play(0, script.bar_line(6))
    script.play(script.bar_line(2), script.bar_line(4))    # seek back to bar 2
    script.play(script.bar_line(12) + RATE // 2, script.bar_line(15))   # seek forward into never-heard bars
    epochs = sorted({b.epoch for b in script.blocks})
    assert len(epochs) == 3
    windows = session_windows(engine, script)
    check_grid(script, windows)
    for epoch, first_bar in zip(epochs, (0, 2, 12)):
        assert min(w["bar_index"] for w in windows if w["epoch"] == epoch) == first_bar
    check_played(script)


def test_stop_and_start(engine, offline_script):
    script = offline_script()
    script.play(0, script.bar_line(3))
    script.stop(script.bar_line(3), 20)                    # stopped: position frozen
    script.play(script.bar_line(3), script.bar_line(5))   # play on from where it stopped
    script.stop(script.bar_line(5), 5)
    script.play(0, script.bar_line(3))                     # rewind and play again
    outputs = [b.output for b in script.blocks if not b.playing]
    assert all(not out.any() for out in outputs), "a stopped host must hear nothing"
    check_grid(script, session_windows(engine, script))
    check_played(script)


# --- real time --------------------------------------------------------------------------------

def play_in_real_time(host: ClapHost, tempo_at, beats_end: float, signal) -> tuple[np.ndarray, dict, dict, list]:
    """Play from beat 0 until `beats_end` at the wall-clock pace of RATE, the tempo of each block
    given by tempo_at(beats) (constant within a block, as hosts report it). Returns the output,
    {block start sample: (beats, tempo)}, {bar: host sample of its bar line}, underruns per block."""
    pos, beats = 0, 0.0
    record, lines, outputs, underruns = {}, {}, [], []
    started = time.monotonic()
    while beats < beats_end:
        tempo = tempo_at(beats)
        step = BLOCK * tempo / 60 / RATE
        record[pos] = (beats, tempo)
        for bar in range(math.ceil(beats / 4), math.floor((beats + step) / 4) + 1):
            if beats <= 4 * bar < beats + step:
                lines[bar] = pos + math.floor((4 * bar - beats) * 60 / tempo * RATE + 0.5)
        x = signal(pos)
        outputs.append(host.process(np.stack([x, x]), Transport(playing=True, tempo=tempo, beats=beats,
                                                                seconds=pos / RATE), frames=BLOCK))
        underruns.append(host.stats()["underruns"])
        pos, beats = pos + BLOCK, beats + step
        time.sleep(max(0.0, started + pos / RATE - time.monotonic()))
    return np.concatenate(outputs, axis=1), record, lines, underruns


def test_tempo_ramp_90_to_140_in_real_time(engine):
    """Bar 1 at 90 BPM, a ramp to 140 BPM over bars 2-3, then 140. Every placement the engine
    publishes for a window not yet playing sits on the bar line that the host's transport of
    some block (the grid's anchor) implies; once the tempo holds, the windows played start on
    the host's bar lines exactly; windows were moved and remade as the tempo moved; no
    underrun after the start; no click anywhere once generated bars play. The input is a
    constant (DC) level: whatever the loop generator cuts from it joins without a step, so any
    step in the output comes from placement (a gap, an overlap, a missing fade), not content."""
    ramp = lambda beats: 90.0 if beats < 4 else 140.0 if beats >= 12 else 90.0 + 50.0 * (beats - 4) / 8  # noqa: E731
    with ClapHost(sample_rate=RATE, max_frames=BLOCK) as host:
        connect(host)
        epoch = host.stats()["epoch"] + 1
        out, record, lines, underruns = play_in_real_time(host, ramp, 24.0,
                                                          lambda pos: np.full(BLOCK, AMPLITUDE, np.float32))
        assert host.stats()["epoch"] == epoch, "a tempo change is not a discontinuity"
    windows = [w for w in engine.windows() if w["epoch"] == epoch]
    for w in windows:
        beats, tempo = record[w["anchor_sample"]]          # the anchor is a block the host played
        assert w["anchor_beat"] == pytest.approx(beats, abs=1e-6) and w["grid_tempo"] == tempo
        if w["start_sample"] > w["playhead"]:
            expected = w["anchor_sample"] + math.floor((4 * w["bar_index"] - beats) * 60 / tempo * RATE + 0.5)
            assert abs(w["start_sample"] - expected) <= 1, w
            assert abs(w["frames"] - round(4 * 60 / tempo * RATE)) <= 1, w
    for bar in (4, 5):                                      # bars after the ramp
        placed = [w for w in windows if w["bar_index"] == bar and w["playhead"] < w["start_sample"]][-1]
        assert abs(placed["start_sample"] - lines[bar]) <= 1, (placed, lines[bar])
    kinds = [w["kind"] for w in windows]
    remade = [w for w in windows if w["kind"] == "generate" and
              any(v["bar_index"] == w["bar_index"] and v["window_id"] < w["window_id"] for v in windows)]
    assert "move" in kinds and remade, "windows did not follow the tempo"
    start_of_bar_1 = lines[1] // BLOCK
    assert underruns[-1] == underruns[start_of_bar_1], "underruns after the first bar"
    generated = out[:, lines[2]:]
    steps = np.abs(np.diff(generated, axis=1)).max(axis=0)
    assert steps.max() <= 0.01, f"a step of {steps.max():.4f} at sample {lines[2] + 1 + int(steps.argmax())}"
    held = out[:, lines[2] + RATE // 10:]      # seams never raise the level (an equal-power fade would, by 3 dB)
    assert np.abs(held - AMPLITUDE).max() < 5e-3, "a gap or a wrong level"


def test_offline_bounces_match_each_other_and_a_real_time_run(engine):
    """Same seed, same input: two offline renders are identical, and a real-time run without
    underruns plays exactly the same samples (the context horizon is the same rule)."""
    tempo = 200.0
    noise = np.random.default_rng(11).uniform(-0.3, 0.3, 6 * RATE).astype(np.float32)
    signal = lambda pos: noise[pos:pos + BLOCK]  # noqa: E731
    bars = 4
    renders = []
    for _ in range(2):
        with ClapHost(sample_rate=RATE, max_frames=BLOCK, offline=True) as host:
            connect(host, seed=7)
            script = Script(host, tempo)
            script.input = lambda pos, frames: np.stack([signal(pos)[:frames]] * 2)
            script.play(0, script.bar_line(bars) // BLOCK * BLOCK)
            renders.append(np.concatenate([b.output for b in script.blocks], axis=1))
            assert host.stats()["offline_timeouts"] == 0
    np.testing.assert_array_equal(renders[0], renders[1])
    with ClapHost(sample_rate=RATE, max_frames=BLOCK) as host:
        connect(host, seed=7)
        out, _, lines, underruns = play_in_real_time(host, lambda beats: tempo, bars * 4, signal)
    assert underruns[-1] == underruns[lines[2] // BLOCK], "the real-time run had underruns in generated bars"
    generated = slice(lines[2], renders[0].shape[1])       # bars 0-1 are preroll (silent offline, maybe underruns live)
    assert np.abs(renders[0][:, generated]).max() > 0.1
    np.testing.assert_array_equal(out[:, generated], renders[0][:, generated])
