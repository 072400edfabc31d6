"""A host that sends no loop points (qtractor, ../shared/BRIEF.md §2b) loops by jumping back to
the loop start, keeping the grid: the shim bumps the epoch by one per jump. The engine treats a
jump back into what was heard as a loop: the first pass after it continues what played before
the jump instead of starting over with silent preroll windows, and from then on the jump is
predicted, so the audio after each wrap is made before it. Driven through the built CLAP
plugin (tests/host/clap_host.py) with the loop generator, whose output says which bar it was
made from (test_scripted_host's sine per bar)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from bridge.layout import const
from tests.host.clap_host import ClapHost
from tests.test_scripted_host import (AMPLITUDE, BLOCK, RATE, Block, Script, connect, freq, offline_script,  # noqa: F401
                                      session_windows)

PASSES = 4


def bar_levels(script: Script, blocks: list[Block]) -> list[float]:
    """RMS of each bar of a run of blocks that starts on a bar line."""
    out = np.concatenate([b.output for b in blocks], axis=1)[0]
    bar = script.bar_line(1) - script.bar_line(0)
    return [float(np.sqrt(np.mean(out[k:k + bar] ** 2))) for k in range(0, len(out) - bar + 1, bar)]


def dominant(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return spectrum.argmax() * RATE / len(audio)


@pytest.mark.parametrize("loop_bars", [(0, 4), (2, 5)], ids=["from-the-song-start", "mid-song"])
def test_a_loop_is_silent_only_on_its_first_pass(engine, offline_script, loop_bars):
    script = offline_script()                                  # lookahead 1, context 1: bar b repeats bar b-1
    first, end_bar = loop_bars
    start, end = script.bar_line(first), script.bar_line(end_bar)
    script.play(0, end)                                        # into the loop from the song start, no loop points
    epochs = [script.blocks[-1].epoch]
    for _ in range(PASSES - 1):
        time.sleep(0.2)
        played = len(script.blocks)
        script.play(start, end)                                # the host jumps back to the loop start
        epochs.append(script.blocks[-1].epoch)
        levels = bar_levels(script, script.blocks[played:])
        assert len(levels) == end_bar - first and min(levels) > 0.1, f"a silent bar after the first wrap: {levels}"
        # the loop's first bar is made from the audio heard before it: the bar before the loop
        # start where that was heard, else (a loop from the song start) the bar that played
        # before the jump, the loop's last
        lead = [b for b in script.blocks[played:] if b.pos + BLOCK <= script.bar_line(first + 1)]
        heard = np.concatenate([b.output for b in lead], axis=1)[0, RATE // 20:-RATE // 20]
        assert abs(dominant(heard) - freq(first - 1 if first else end_bar - 1)) <= 2 * RATE / len(heard)
    assert epochs == [epochs[0] + k for k in range(PASSES)], "the shim bumps the epoch by one per jump"
    windows = session_windows(engine, script)
    for epoch in epochs[2:]:      # from the second wrap on the jump was predicted: made in the pass before it
        entry = [w for w in windows if w["epoch"] == epoch and w["bar_index"] == first and w["kind"] == "generate"]
        assert entry and entry[0]["session_epoch"] == epoch - 1, entry


def test_playing_on_past_the_loop_end_drops_the_prediction(engine, offline_script):
    script = offline_script()
    script.play(0, script.bar_line(4))
    script.play(script.bar_line(1), script.bar_line(8))        # back to bar 1 once, then on past bar 4
    assert min(bar_levels(script, [b for b in script.blocks[-700:] if b.pos >= script.bar_line(4)])) > 0.1
    for bar in range(5, 8):                                    # song order again: bar b repeats bar b-1
        lo, hi = script.bar_line(bar) + RATE // 20, script.bar_line(bar + 1) - RATE // 20
        out = np.concatenate([b.output for b in script.blocks if lo <= b.pos < hi], axis=1)[0]
        assert abs(dominant(out) - freq(bar - 1)) <= 2 * RATE / len(out), bar


def test_a_real_time_loop_without_loop_points_plays_every_bar_after_the_first_wrap(engine):
    """Real time, default lookahead and context: a two-bar loop from the song start, four passes."""
    with ClapHost(sample_rate=RATE, max_frames=BLOCK) as host:
        connect(host)
        script = Script(host)
        end = script.bar_line(2)
        started = time.monotonic()
        played = 0
        underruns = []
        for k in range(PASSES):
            pos, first_block = 0, len(script.blocks)
            while pos < end:
                frames = min(BLOCK, end - pos)
                out = host.process(script.input(pos, frames), script.transport(pos), frames=frames)
                script.blocks.append(Block(host.stats()["epoch"], pos, True, out))
                pos += frames
                played += frames
                time.sleep(max(0.0, started + played / RATE - time.monotonic()))
            underruns.append(host.stats()["underruns"])
            if k:
                levels = bar_levels(script, script.blocks[first_block:])
                assert min(levels) > 0.1, f"pass {k + 1}: a silent bar {levels}"
        assert underruns[-1] == underruns[1], "a predicted wrap still waited for its windows"


def test_wraps_at_block_granularity_like_qtractor_are_predicted(engine, offline_script):
    """qtractor wraps at block granularity: the block across the loop end plays on past it and
    the next one starts as far past the loop start (the position minus the loop length). The
    loop here ends off the block grid, so every wrap lands somewhere else after the start."""
    script = offline_script()
    length = script.bar_line(4) - 200                          # a loop end 200 samples before bar 4's line
    pos, epochs, passes = 0, [], []
    while len(passes) < PASSES:
        first = len(script.blocks)
        while pos < length:
            out = script.host.process(script.input(pos, BLOCK), script.transport(pos), frames=BLOCK)
            script.blocks.append(Block(script.host.stats()["epoch"], pos, True, out))
            pos += BLOCK
        passes.append(script.blocks[first:])
        epochs.append(script.blocks[-1].epoch)
        pos -= length                                          # the jump back, keeping what went past the end
        time.sleep(0.2)     # offline runs far ahead of real time: give the engine the time a bar would
    assert epochs == [epochs[0] + k for k in range(PASSES)]
    for blocks in passes[1:]:
        out = np.concatenate([b.output for b in blocks], axis=1)[0, BLOCK:]
        bar = script.bar_line(1)
        assert min(float(np.sqrt(np.mean(out[k:k + bar] ** 2))) for k in range(0, 3 * bar, bar)) > 0.1
    windows = session_windows(engine, script)
    for epoch in epochs[2:]:
        entry = [w for w in windows if w["epoch"] == epoch and w["bar_index"] == 0 and w["kind"] == "generate"]
        assert entry and entry[0]["session_epoch"] == epoch - 1 and entry[0]["start_sample"] == 0, str(\
            [(w["epoch"], w["bar_index"], w["kind"], w["session_epoch"], w["playhead"]) for w in windows])


class FallsSilent(Script):
    """The scripted song whose input stops at a bar line (the track's part is over)."""
    silent_from: int = 4

    def input(self, pos: int, frames: int) -> np.ndarray:
        audio = super().input(pos, frames)
        audio[:, max(0, min(frames, self.bar_line(self.silent_from) - pos)):] = 0.0
        return audio


def test_the_model_loops_the_bars_it_free_runs_with_sound_in_every_bar(engine, offline_script):
    """The diffusion model and the track memory inside a loop without loop points: the input
    plays bars 0-3 and stops; the host then loops bars 4-7, which the model made from its own
    output held to the track's last bars. Every bar of every pass sounds, at the track's level
    (bar RMS within 6 dB of the input's), and no block waited out its window."""
    made = offline_script()
    made.host.set_param("generator", const("LD_GENERATOR_DIFFUSION"))
    script = FallsSilent(made.host, made.tempo, made.tsig)
    start, end = script.bar_line(4), script.bar_line(8)
    script.play(0, end)
    track = AMPLITUDE / np.sqrt(2)
    for k in range(PASSES - 1):
        played = len(script.blocks)
        script.play(start, end)                                # the host jumps back to bar 4
        levels = bar_levels(script, script.blocks[played:])
        assert len(levels) == 4, levels
        assert all(abs(20 * np.log10(level / track)) <= 6 for level in levels), f"pass {k + 2}: {levels}"
    assert script.host.stats()["offline_timeouts"] == 0
    made_by = {w["generator"] for w in session_windows(engine, script) if w["kind"] == "generate" and w["bar_index"] >= 4}
    assert made_by == {"diffusion"}, made_by
