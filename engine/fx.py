"""The FX chain of a preset: pedalboard effects applied to each generated window, in the engine.

A chain is validated once, when its preset loads (`parse_chain`), and built fresh for every
window (`apply`), so windows share no effect state: a window sounds the same whenever and in
whatever order it is made. Reverb and delay are warmed up on the audio that precedes the
window (its context), as long as the chain's own tail (`warmup_seconds`), so their tails do not
restart at every window; chorus and phaser LFOs start on their period in song time, so their
phase runs on across windows.

In a preset:
    [[fx]]
    plugin = "HighpassFilter"
    cutoff_frequency_hz = 40.0
Parameters left out keep pedalboard's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from engine.validate import Number, PresetError, check_keys

MAX_EFFECTS = 8
_HZ = Number(20.0, 20000.0)
_DB = Number(-60.0, 24.0)
_MS = Number(0.1, 2000.0)
_UNIT = Number(0.0, 1.0)
_SHELF = {"cutoff_frequency_hz": _HZ, "gain_db": Number(-24.0, 24.0), "q": Number(0.1, 10.0)}
# pedalboard class name -> its parameters we allow, with ranges
FX_PLUGINS: dict[str, dict[str, Number]] = {
    "HighpassFilter": {"cutoff_frequency_hz": _HZ},
    "LowpassFilter": {"cutoff_frequency_hz": _HZ},
    "HighShelfFilter": _SHELF,
    "LowShelfFilter": _SHELF,
    "PeakFilter": _SHELF,
    "Compressor": {"threshold_db": _DB, "ratio": Number(1.0, 30.0), "attack_ms": _MS, "release_ms": _MS},
    "Limiter": {"threshold_db": _DB, "release_ms": _MS},
    "Gain": {"gain_db": Number(-60.0, 24.0)},
    "Distortion": {"drive_db": Number(0.0, 60.0)},
    "Reverb": {"room_size": _UNIT, "damping": _UNIT, "wet_level": _UNIT, "dry_level": _UNIT, "width": _UNIT},
    "Delay": {"delay_seconds": Number(0.001, 2.0), "feedback": Number(0.0, 0.95), "mix": _UNIT},
    "Chorus": {"rate_hz": Number(0.01, 20.0), "depth": _UNIT, "centre_delay_ms": Number(0.5, 50.0),
               "feedback": Number(0.0, 0.95), "mix": _UNIT},
    "Phaser": {"rate_hz": Number(0.01, 20.0), "depth": _UNIT, "centre_frequency_hz": _HZ,
               "feedback": Number(0.0, 0.95), "mix": _UNIT},
}
NYQUIST_FRACTION = 0.45   # cutoffs above this fraction of the host rate are lowered to it
# The warm-up on the audio before a window: the chain's tail, at least the time a compressor's
# envelope needs, at most what a window's context can hold (bench/fx_cost.py).
MIN_WARMUP_SECONDS, MAX_WARMUP_SECONDS = 1.0, 6.0
TAIL_DB = -60.0          # a tail ends where the chain's impulse response stays this far under its peak
# Effects with an LFO (pedalboard starts it at phase 0 on reset, default rate 1 Hz), and the
# slowest one whose phase is carried from window to window (a slower LFO barely moves per window).
LFO_EFFECTS = ("Chorus", "Phaser")
LFO_DEFAULT_HZ = 1.0
MAX_LFO_PERIOD_SECONDS = 8.0


@dataclass(frozen=True)
class Effect:
    plugin: str
    params: tuple[tuple[str, float], ...]


def parse_chain(items: Any, where: str) -> tuple[Effect, ...]:
    """The `fx` array of a preset, validated: each entry names a plugin of FX_PLUGINS and only its parameters."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PresetError(f"{where}: fx = {items!r} is not allowed; allowed: an array of tables ([[fx]] entries)")
    if len(items) > MAX_EFFECTS:
        raise PresetError(f"{where}: fx has {len(items)} effects; allowed: at most {MAX_EFFECTS}")
    chain = []
    for index, item in enumerate(items):
        at = f"{where} [[fx]] #{index + 1}"
        plugin = item.get("plugin")
        if plugin not in FX_PLUGINS:
            raise PresetError(f"{at}: plugin = {plugin!r} is not allowed; allowed: {', '.join(FX_PLUGINS)}")
        rules = FX_PLUGINS[plugin]
        check_keys(f"{at} ({plugin})", item, ("plugin",), tuple(rules))
        params = tuple((key, rules[key].check(f"{at} ({plugin})", key, value))
                       for key, value in item.items() if key != "plugin")
        chain.append(Effect(plugin, params))
    return tuple(chain)


def build(chain: tuple[Effect, ...], sample_rate: float):
    """A pedalboard.Pedalboard for the chain at this rate."""
    import pedalboard
    plugins = []
    for effect in chain:
        params = {key: (min(value, NYQUIST_FRACTION * sample_rate) if key.endswith("frequency_hz") else value)
                  for key, value in effect.params}
        plugins.append(getattr(pedalboard, effect.plugin)(**params))
    return pedalboard.Pedalboard(plugins)


@lru_cache(maxsize=64)
def warmup_seconds(chain: tuple[Effect, ...], sample_rate: float) -> float:
    """How much of the audio before a window the chain runs first: how long its impulse response
    takes to fall TAIL_DB under its peak (a room-size 1.0 reverb or a long feedback delay rings
    for seconds), within MIN_WARMUP_SECONDS..MAX_WARMUP_SECONDS. Measured once per chain and rate."""
    impulse = np.zeros((2, int(MAX_WARMUP_SECONDS * sample_rate)), np.float32)
    impulse[:, 0] = 0.5
    envelope = np.abs(build(chain, sample_rate)(impulse, sample_rate, reset=True)).max(axis=0)
    ringing = np.flatnonzero(envelope >= envelope.max() * 10 ** (TAIL_DB / 20)) if envelope.max() > 0 else [0]
    return float(np.clip(ringing[-1] / sample_rate, MIN_WARMUP_SECONDS, MAX_WARMUP_SECONDS))


def lfo_period(chain: tuple[Effect, ...], sample_rate: float) -> float | None:
    """Samples after which every LFO of the chain is back at its starting phase: the slowest
    one's period when the others' divide it; None without LFOs, or when that is over
    MAX_LFO_PERIOD_SECONDS or the periods share none."""
    periods = [sample_rate / dict(e.params).get("rate_hz", LFO_DEFAULT_HZ) for e in chain if e.plugin in LFO_EFFECTS]
    if not periods or max(periods) > MAX_LFO_PERIOD_SECONDS * sample_rate:
        return None
    longest = max(periods)
    shared = all(abs(longest / p - round(longest / p)) < 1e-6 for p in periods)
    return longest if shared else None


def _warmup(chain: tuple[Effect, ...], warmup: np.ndarray, sample_rate: float, position: int | None) -> np.ndarray:
    """The end of `warmup` as long as the chain's tail. Given the window's song position, it starts
    on a multiple of the chain's LFO period in song time (zeros where the context is shorter),
    so that LFOs have the phase they would have over the whole song and windows join without a
    phase step."""
    length = int(warmup_seconds(chain, sample_rate) * sample_rate)
    period = lfo_period(chain, sample_rate)
    if position is not None and period:
        start = position - length
        length += int(round(start - np.floor(start / period) * period))
    taken = warmup[:, max(0, warmup.shape[1] - length):]
    return np.concatenate([np.zeros((warmup.shape[0], length - taken.shape[1]), np.float32), taken], axis=1)


def apply(chain: tuple[Effect, ...], audio: np.ndarray, sample_rate: float,
          warmup: np.ndarray | None = None, position: int | None = None) -> np.ndarray:
    """float32 [channels, n] through the chain; the end of `warmup` (audio that plays before,
    [channels, m]) is run through first and dropped, so time-based effects start from their
    steady state. `position`: the window's first sample in song time (aligns LFOs, `_warmup`)."""
    if not chain:
        return audio
    before = np.zeros((audio.shape[0], 0), np.float32) if warmup is None else _warmup(chain, warmup, sample_rate, position)
    signal = np.ascontiguousarray(np.concatenate([before, audio], axis=1), dtype=np.float32)
    out = build(chain, sample_rate)(signal, sample_rate, reset=True)
    return np.ascontiguousarray(out[:, before.shape[1]:], dtype=np.float32)
