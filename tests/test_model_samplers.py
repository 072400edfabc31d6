"""The samplers are pure functions: check them against denoisers with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from engine import samplers


def test_noise_levels_run_from_pure_noise_to_clean():
    levels = samplers.noise_levels(4)
    assert levels.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        samplers.noise_levels(0)


def test_a_rho_above_one_spends_the_later_steps_at_low_noise():
    assert samplers.noise_levels(2, rho=2.0).tolist() == [1.0, 0.25, 0.0]
    steep, even = samplers.noise_levels(5, rho=3.0), samplers.noise_levels(5)
    assert steep[0] == 1.0 and steep[-1] == 0.0 and (np.diff(steep) < 0).all()
    assert (steep[1:-1] < even[1:-1]).all()
    with pytest.raises(ValueError, match="rho must be > 0"):
        samplers.noise_levels(2, rho=0.0)


def test_euler_with_an_exact_denoiser_returns_its_x0_and_calls_it_once_per_step():
    target = np.arange(6, dtype=np.float32).reshape(2, 3)
    calls = []

    def exact(x, t):
        calls.append(t)
        return target

    out = samplers.euler(exact, np.random.default_rng(0).standard_normal((2, 3)), samplers.noise_levels(3))
    assert np.allclose(out, target)
    assert calls == pytest.approx([1.0, 2 / 3, 1 / 3])


def test_euler_passes_the_implied_noise_to_the_next_level():
    noise = np.ones(3)
    seen = []

    def half(x, t):
        seen.append(x.copy())
        return np.zeros(3)  # predicts x0 = 0, so x_t must stay t * noise

    samplers.euler(half, noise, samplers.noise_levels(2))
    assert np.allclose(seen[1], 0.5 * noise)


def test_guidance_extrapolates_away_from_the_unconditional_prediction():
    conditional = lambda x, t: np.full(2, 3.0)  # noqa: E731
    unconditional = lambda x, t: np.full(2, 1.0)  # noqa: E731
    assert np.allclose(samplers.guided(conditional, unconditional, 1.0)(None, 0.5), 3.0)
    assert np.allclose(samplers.guided(conditional, unconditional, 2.0)(None, 0.5), 5.0)
