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
    grid = Grid(rate, tempo, *meter, anchor_sample=anchor_sample,
                anchor_beat=anchor_sample * tempo / 60 / rate)   # a playhead mid-song at a non-bar position
    for bar in [0, 1, 2, 3, 17, 1000, 5000, -3]:
        line = grid.bar_start_sample(bar)
        assert abs(line - exact_bar_start(grid, bar)) <= 1, (bar, line)
        assert grid.bar_at_sample(line) == bar and grid.bar_at_sample(line - 1) == bar - 1
    assert grid.bar_beats == meter[0] * 4 / meter[1]


def test_meters_and_anchors():
    assert Grid(44100, 120, 3, 4, 0, 0.0).bar_beats == 3
    assert Grid(44100, 120, 7, 8, 0, 0.0).bar_beats == 3.5
    at_zero = Grid(44100, 133.333, 7, 8, 0, 0.0)
    later = Grid(44100, 133.333, 7, 8, 26_460_000, 26_460_000 * 133.333 / 60 / 44100)  # 10 minutes in
    assert all(abs(at_zero.bar_start_sample(b) - later.bar_start_sample(b)) <= 1 for b in range(0, 3000, 7))
    assert later.same_grid(at_zero)
    # 100 BPM at 44.1 kHz: bar lines are whole numbers of samples and must be hit exactly
    assert Grid(44100, 100, 4, 4, 0, 0.0).bar_lines(0, 8) == [n * 105840 for n in range(9)]


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
