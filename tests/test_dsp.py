"""Shared DSP: regridding keeps attacks on the new grid (faster and slower), joins without gaps
and keeps a level; to_length leaves bars alone that need no change."""
from __future__ import annotations

import numpy as np
import pytest

from engine.dsp import regrid, to_length

RATE = 48000


def hits(step: float, count: int, offset: int = 100) -> np.ndarray:
    """A decaying noise hit every `step` samples (offset after each grid line)."""
    out = np.zeros((2, round(step * count)), np.float32)
    hit = np.random.default_rng(0).uniform(-1, 1, 800) * np.exp(-np.arange(800) / 150)
    for k in range(count):
        at = round(k * step) + offset
        out[:, at:at + 800] = hit[:out.shape[1] - at]
    return out


def attacks(audio: np.ndarray, threshold: float = 0.05) -> list[int]:
    found, i, env = [], 0, np.abs(audio[0])
    while i < len(env):
        if env[i] > threshold:
            found.append(i)
            i += 3000
        else:
            i += 1
    return found


@pytest.mark.parametrize("ratio", [0.7, 0.95, 1.4])
def test_regrid_puts_every_attack_on_the_new_grid(ratio):
    step = 9600.0
    audio = hits(step, 12)
    marks = np.arange(13) * step
    out = regrid(audio, marks, marks * ratio, round(12 * step * ratio), RATE)
    assert [a - round(k * step * ratio) - 100 for k, a in enumerate(attacks(out))] == [0] * 12


def test_regrid_joins_a_level_without_a_gap_or_a_step():
    level = np.full((2, 20000), 0.5, np.float32)
    marks = np.linspace(0, 20000, 9)
    for ratio in (0.8, 1.01):       # faster; a hair slower (resampled, not gated)
        out = regrid(level, marks, marks * ratio, round(20000 * ratio), RATE)
        assert np.abs(out - 0.5).max() < 1e-3


def test_to_length_changes_only_what_needs_changing():
    bar = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 96000)).astype(np.float32)
    even = np.arange(16) * 6000.0
    np.testing.assert_array_equal(to_length(bar, 96001, RATE, even)[:, :96000], bar)
    slower = to_length(hits(6000.0, 16), 120000, RATE, even)
    assert [a - k * 7500 - 100 for k, a in enumerate(attacks(slower))] == [0] * 16
