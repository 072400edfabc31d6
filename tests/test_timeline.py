"""Bar-grid math: exact bar lines at odd tempos and meters, anchors, horizons, garbage input."""
from __future__ import annotations

import logging
import math
from fractions import Fraction

import pytest

from bridge.convert import TEMPO_RANGE
from engine.timeline import Grid, GridTracker, horizon_bar, window_bar

TEMPOS = [20.0, 87.3, 99.99, 133.333, 173.2, 300.0]
METERS = [(4, 4), (3, 4), (7, 8), (6, 8), (5, 4)]


def exact_bar_start(grid: Grid, bar: int) -> Fraction:
    """Sample of a bar line in exact rational arithmetic."""
    beat = Fraction(grid.bar_phase) + bar * Fraction(grid.tsig_num * 4, grid.tsig_den)
    return grid.anchor_sample + (beat - Fraction(grid.anchor_beat)) * grid.sample_rate * 60 / Fraction(grid.tempo_bpm)


@pytest.mark.parametrize("tempo", TEMPOS)
@pytest.mark.parametrize("meter", METERS)
@pytest.mark.parametrize("rate", [44100, 48000])
def test_bar_lines_are_exact_to_one_sample_for_hours(tempo, meter, rate):
    anchor_sample = 987_654
    grid = Grid.constant(rate, tempo, *meter, anchor_sample=anchor_sample,
                anchor_beat=anchor_sample * tempo / 60 / rate)   # a playhead mid-song at a non-bar position
    for bar in [0, 1, 2, 3, 17, 1000, 5000, -3]:
        line = grid.bar_start_sample(bar)
        assert abs(line - exact_bar_start(grid, bar)) <= 1, (bar, line)
        assert grid.bar_at_sample(line) == bar and grid.bar_at_sample(line - 1) == bar - 1
    assert grid.bar_beats == meter[0] * 4 / meter[1]


def test_meters_and_anchors():
    assert Grid.constant(44100, 120, 3, 4, 0, 0.0).bar_beats == 3
    assert Grid.constant(44100, 120, 7, 8, 0, 0.0).bar_beats == 3.5
    at_zero = Grid.constant(44100, 133.333, 7, 8, 0, 0.0)
    later = Grid.constant(44100, 133.333, 7, 8, 26_460_000, 26_460_000 * 133.333 / 60 / 44100)  # 10 minutes in
    assert all(abs(at_zero.bar_start_sample(b) - later.bar_start_sample(b)) <= 1 for b in range(0, 3000, 7))

    # 100 BPM at 44.1 kHz: bar lines are whole numbers of samples and must be hit exactly
    assert Grid.constant(44100, 100, 4, 4, 0, 0.0).bar_lines(0, 8) == [n * 105840 for n in range(9)]


def test_windows_and_horizon():
    assert [window_bar(b, 2) for b in (-1, 0, 1, 2, 5)] == [-2, 0, 0, 2, 4]
    assert horizon_bar(5, lookahead=2, window_bars=1) == 4
    assert horizon_bar(8, lookahead=3, window_bars=2) == 4
    assert horizon_bar(8, lookahead=1, window_bars=4) == 8


def test_tracker_keeps_last_good_values_and_logs(caplog):
    tracker = GridTracker(48000, fallback_tempo=120, tempo_range=TEMPO_RANGE)
    good = tracker.update(tempo=90, tsig_num=3, tsig_den=4, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
    with caplog.at_level(logging.WARNING):
        for bad_tempo in [0.0, -10.0, math.nan, 10_000.0, math.inf]:
            grid = tracker.update(tempo=bad_tempo, tsig_num=3, tsig_den=4, pos_samples=0, pos_beats=0.0,
                                  bar_start_beats=0.0)
            assert grid is good
        grid = tracker.update(tempo=90, tsig_num=0, tsig_den=4, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
        assert grid is good
        grid = tracker.update(tempo=90, tsig_num=3, tsig_den=5, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
        assert grid is good
    assert caplog.text.count("ignored; allowed") == 7
    assert "tempo 0.0 BPM ignored; allowed: 20..300 BPM" in caplog.text
    assert "time signature 0/4 ignored" in caplog.text


def test_tracker_anchor_and_bar_position():
    tracker = GridTracker(44100, 120, TEMPO_RANGE)
    first = tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
    # a later block that agrees with the anchor keeps the grid object (no wobble)
    assert tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=22050, pos_beats=1.0,
                          bar_start_beats=0.0) is first
    # a host that reports 1-based bars (bar position 4.0 inside the first bar) is ignored: phase 0
    grid = tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=22050, pos_beats=1.0,
                          bar_start_beats=4.0, reanchor=True)
    assert grid.bar_phase == 0 and grid.bar_start_sample(1) == 88200
    # a pickup: bar lines at beats 1, 5, 9, ...
    grid = tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=110250, pos_beats=5.0,
                          bar_start_beats=5.0, reanchor=True)
    assert grid.bar_phase == 1.0 and grid.bar_start_sample(1) == 110250
    # a tempo change makes a new grid
    assert tracker.update(tempo=100, tsig_num=4, tsig_den=4, pos_samples=110250, pos_beats=5.0,
                          bar_start_beats=5.0) is not grid


# --- the tempo map -----------------------------------------------------------------------------

def ardour_beats(sample: int, tempo_changes, rate=48000) -> float:
    """The host's beat at `sample` for steps [(sample, beat, tempo)], quantized to 1/1920 beat."""
    start, beat, tempo = ([c for c in tempo_changes if c[0] <= sample] or tempo_changes[:1])[-1]
    return round((beat + (sample - start) * tempo / 60 / rate) * 1920) / 1920


@pytest.mark.parametrize("step_beat, first_tempo, second_tempo",
                         [(16.0, 100.0, 140.0), (18.0, 100.0, 140.0), (16.0, 140.0, 90.0), (17.5, 140.0, 90.0)])
def test_a_step_reported_late_with_quantized_beats_is_placed_exactly(step_beat, first_tempo, second_tempo):
    """Ardour reports a change at the first 1024-frame block after it, positions in 1/1920-beat
    ticks: the map puts the change on the beat line it sits on, so bar lines after it are exact."""
    rate = 48000
    change = round(step_beat * 60 / first_tempo * rate)
    host = [(0, 0.0, first_tempo), (change, step_beat, second_tempo)]
    tracker = GridTracker(rate, 120, TEMPO_RANGE)
    grids = set()
    for pos in range(-768, change + 20 * 1024, 1024):
        tempo = ([t for s, _, t in host if s <= pos] or [first_tempo])[-1]
        grids.add(tracker.update(tempo=tempo, tsig_num=4, tsig_den=4, pos_samples=pos,
                                 pos_beats=ardour_beats(pos, host), bar_start_beats=0.0, reanchor=pos < 0))
    grid = tracker.grid
    assert len(grids) == 2, "one grid before the change and one after it, nothing in between"
    assert (grid.segments[-1].sample, grid.segments[-1].beat) == (change, step_beat)
    for bar in range(math.ceil(step_beat / 4), 12):
        exact = change + (4 * bar - step_beat) * 60 / second_tempo * rate
        assert abs(grid.bar_start_sample(bar) - exact) <= 1, bar
    assert abs(grid.bar_start_sample(2) - 8 * 60 / first_tempo * rate) <= 1, "the history is kept"


def test_a_ramp_changes_the_tempo_at_each_block_and_stays_within_a_tick():
    rate, tracker = 48000, GridTracker(48000, 120, TEMPO_RANGE)
    beats, tempo = 0.0, 100.0
    for pos in range(0, 200 * 1024, 1024):
        tracker.update(tempo=tempo, tsig_num=4, tsig_den=4, pos_samples=pos, pos_beats=round(beats * 1920) / 1920,
                       bar_start_beats=0.0, reanchor=pos == 0)
        assert abs(tracker.grid.beat_at_sample(pos) - beats) <= 1 / 960
        beats += 1024 * tempo / 60 / rate
        tempo = min(140.0, tempo + 0.25)
    assert tracker.grid.tempo_bpm == 140.0


def test_bars_before_a_meter_change_keep_the_bar_lines_they_were_played_at():
    tracker = GridTracker(48000, 120, TEMPO_RANGE)
    tracker.update(tempo=120, tsig_num=4, tsig_den=4, pos_samples=0, pos_beats=0.0, bar_start_beats=0.0)
    grid = tracker.update(tempo=120, tsig_num=7, tsig_den=8, pos_samples=16 * 24000, pos_beats=16.0,
                          bar_start_beats=16.0, reanchor=True)
    first_78 = grid.bar_at_sample(16 * 24000)
    assert grid.bar_span_beats(first_78) == (16.0, 19.5)
    assert grid.bar_span_beats(first_78 - 1) == (12.0, 16.0) and grid.bar_span_beats(first_78 - 3) == (4.0, 8.0)
