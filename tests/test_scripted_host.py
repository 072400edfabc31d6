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
CLICK_FACTOR = 2.0      # equal-power fades of two sines stay under ~1.5x; a click is far above
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
    while host.stats()["engine_state"] != 1:
        assert time.monotonic() < deadline, "the plugin did not connect to the engine"
        host.process(None, None, frames=BLOCK)
        time.sleep(0.005)


@pytest.fixture
def offline_script(engine):
    hosts = []

    def make(tempo=120.0, tsig=(4, 4)) -> Script:
        hosts.append(ClapHost(sample_rate=RATE, max_frames=BLOCK, offline=True))
        connect(hosts[-1], lookahead=1, context_bars=1)
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
        script.play(start, end, loop)
        epochs.append(script.blocks[-1].epoch)
    assert epochs == [epochs[0], epochs[0] + 1, epochs[0] + 2], "the shim bumps the epoch by one per wrap"
    windows = session_windows(engine, script)
    check_grid(script, windows, loop)
    assert all(w["start_sample"] + w["frames"] <= script.bar_line(8) for w in windows), "a window went past the loop end"
    for epoch in epochs[1:]:
        first = [w for w in windows if w["epoch"] == epoch and w["bar_index"] == 4]
        assert first, f"no window at the loop start in epoch {epoch}"
        assert first[0]["kind"] == "generate"
    # the windows after each wrap were made before the wrap (predicted), so no pass waited
    # for its first window: the loop-start window of the next epoch precedes the wrap's transport
    ahead = [i for i, w in enumerate(windows) if w["epoch"] == epochs[1] and w["bar_index"] == 4][0]
    last_bar_7 = [i for i, w in enumerate(windows) if w["epoch"] == epochs[0] and w["bar_index"] == 7][0]
    assert ahead > last_bar_7
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
