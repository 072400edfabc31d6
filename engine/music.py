"""Procedural, seedable music for training and evaluating the built-in model.

A *song* is a few bars in one style, tempo and time signature, built from one drum kit,
one bass line, one chord progression and one lead motif chosen from the seed. Every bar
plays the same parts with bar-to-bar variation (chord changes, fills on the last bar of a
4-bar phrase, drops where drums and bass rest, small melodic changes), so the right
continuation depends visibly on the context. Every note starts on the 16th-note grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.styles import Style
from engine.representation import BEAT_STARTS, SAMPLE_RATE, TIME_SIGNATURES, sixteenths_per_bar

# 16th-note positions of snare backbeats in each meter
BACKBEATS = {(4, 4): (4, 12), (3, 4): (4, 8), (6, 8): (6,), (7, 8): (8,)}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}
CHORD_DEGREES = {"triad": (0, 2, 4), "seventh": (0, 2, 4, 6), "power": (0, 4, 7)}


@dataclass(frozen=True)
class Song:
    audio: np.ndarray           # float32 mono at SAMPLE_RATE, bars (+ tail) long
    tempo_bpm: float
    tsig: tuple[int, int]
    bars: int
    style: int


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _tone(freq: float, n: int, wave: str, cutoff_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Band-limited oscillator: additive harmonics up to min(cutoff, Nyquist), so brightness is free."""
    harmonics = max(1, min(40, int(min(cutoff_hz, SAMPLE_RATE * 0.45) / freq)))
    k = np.arange(1, harmonics + 1)
    if wave == "sine":
        amps = (k == 1).astype(np.float64)
    elif wave == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    else:  # saw
        amps = 1.0 / k
    table_size = 2048
    phase = np.arange(table_size) / table_size
    table = (amps[:, None] * np.sin(2 * np.pi * k[:, None] * phase[None, :])).sum(0)
    table /= np.abs(table).max()
    start = rng.random()
    idx = ((start + freq * np.arange(n) / SAMPLE_RATE) % 1.0 * table_size).astype(np.int64)
    return table[idx]


def _envelope(n: int, attack: int, decay_s: float, release: int) -> np.ndarray:
    t = np.arange(n)
    env = np.minimum(1.0, (t + 1) / max(1, attack)) * np.exp(-t / (decay_s * SAMPLE_RATE))
    if release > 0 and n > release:
        env[-release:] *= np.linspace(1.0, 0.0, release)
    return env


@dataclass(frozen=True)
class _Kit:
    kick_hz: float
    kick_decay: float
    snare_hz: float
    snare_decay: float
    hat_decay: float


def _kick(kit: _Kit, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    freq = kit.kick_hz + 120.0 * np.exp(-t * 40.0)
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t / kit.kick_decay)


def _snare(kit: _Kit, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    noise = np.diff(rng.standard_normal(n + 1))
    return (0.5 * noise * np.exp(-t / kit.snare_decay) + 0.6 * np.sin(2 * np.pi * kit.snare_hz * t) * np.exp(-t / 0.05))


def _hat(kit: _Kit, n: int, rng: np.random.Generator, open_hat: bool) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    noise = np.diff(rng.standard_normal(n + 2), 2) * 0.3
    return noise * np.exp(-t / (kit.hat_decay * (5.0 if open_hat else 1.0)))


class _Track:
    """A mono buffer that notes are added into (clipped at the end of the buffer)."""

    def __init__(self, n: int):
        self.buf = np.zeros(n)

    def add(self, start: int, sound: np.ndarray, gain: float) -> None:
        end = min(len(self.buf), start + len(sound))
        if end > start:
            self.buf[start:end] += gain * sound[: end - start]


def render_song(style: Style, tempo_bpm: float, tsig: tuple[int, int], bars: int, seed: int,
                tail_sixteenths: int = 2) -> Song:
    """Render `bars` bars (+ a short tail) of the style. Same arguments, same audio."""
    p = style.music
    rng = np.random.default_rng(seed)
    bar_len = sixteenths_per_bar(*tsig)
    sixteenth = SAMPLE_RATE * 15.0 / tempo_bpm
    total_sixteenths = bars * bar_len + tail_sixteenths
    n = int(np.ceil(total_sixteenths * sixteenth))
    at = lambda step: int(round(step * sixteenth))  # noqa: E731 - sample index of a 16th step

    kit = _Kit(kick_hz=rng.uniform(42, 62), kick_decay=rng.uniform(0.12, 0.35), snare_hz=rng.uniform(150, 240),
               snare_decay=rng.uniform(0.06, 0.18), hat_decay=rng.uniform(0.015, 0.04))
    beats = BEAT_STARTS[tsig]
    kick_steps = {0} | {s for s in range(0, bar_len, 2) if rng.random() < p["kick_density"]}
    if p["four_on_floor"]:
        kick_steps |= set(beats)
    hat_every = 16 // p["hat_rate"] if p["hat_rate"] else 0
    hat_steps = {s for s in range(0, bar_len, hat_every) if rng.random() < p["hat_density"]} if hat_every else set()
    open_hat_steps = {s for s in hat_steps if s % 4 == 2 and rng.random() < p["open_hat"]}
    bass_steps = sorted({0} | {s for s in range(bar_len) if rng.random() < p["bass_density"] * (1.0 if s % 2 == 0 else 0.4)})
    chord_steps = sorted({0} | {s for s in range(2, bar_len, 2) if rng.random() < 0.35})
    lead_steps = sorted(s for s in range(bar_len) if rng.random() < p["lead_density"] * (1.0 if s % 2 == 0 else 0.5))
    lead_degrees = {s: int(rng.integers(0, 7)) for s in lead_steps}

    scale = SCALES[p["scale"]]
    root = 36 + int(rng.integers(0, 12))
    progression = [0] + [int(rng.choice([1, 2, 3, 4, 5, 6])) for _ in range(3)]
    degree_note = lambda degree: root + 12 * (degree // 7) + scale[degree % 7]  # noqa: E731
    cutoff = p["brightness_hz"] * rng.uniform(0.8, 1.25)
    drops = {b for b in range(1, bars) if rng.random() < p["drop_prob"]}

    drums, bass, chords, lead = (_Track(n) for _ in range(4))
    for bar in range(bars + 1):  # one extra bar so the tail is filled
        base = bar * bar_len
        chord_degree = progression[bar % 4]
        fill = bar % 4 == 3 and rng.random() < p["fill_prob"]
        dropped = bar in drops
        if not dropped:
            for s in range(bar_len):
                accent = 1.0 if s in beats else 0.7
                if s in kick_steps and not (fill and s >= bar_len - 4):
                    drums.add(at(base + s), _kick(kit, at(2.5)), 0.9 * accent)
                if s in BACKBEATS[tsig] or (fill and s >= bar_len - 4):
                    gain = 0.7 if not fill or s < bar_len - 4 else 0.35 + 0.1 * (s - bar_len + 4)
                    drums.add(at(base + s), _snare(kit, at(2.0), rng), gain)
                if s in hat_steps:
                    drums.add(at(base + s), _hat(kit, at(2.0), rng, s in open_hat_steps), 0.35 * accent)
            for i, s in enumerate(bass_steps):
                length = at((bass_steps[i + 1] if i + 1 < len(bass_steps) else bar_len) - s)
                note = degree_note(chord_degree) + (7 if rng.random() < 0.15 else 0) + (12 if rng.random() < 0.1 else 0)
                env = _envelope(length, 40, 0.25, min(200, length // 4))
                bass.add(at(base + s), _tone(_midi_hz(note), length, p["bass_wave"], cutoff * 0.5, rng) * env, 0.5)
        chord_notes = [degree_note(chord_degree + d) + 12 if p["chord_type"] != "power"
                       else degree_note(chord_degree) + 12 + d for d in CHORD_DEGREES[p["chord_type"]]]
        if p["chord_mode"] == "pad":
            length = at(bar_len)
            env = _envelope(length, int(0.03 * SAMPLE_RATE), 4.0, length // 6)
            for note in chord_notes:
                chords.add(at(base), _tone(_midi_hz(note), length, p["chord_wave"], cutoff, rng) * env, 0.18)
        elif p["chord_mode"] == "stab":
            for s in chord_steps:
                length = at(1.5)
                env = _envelope(length, 20, 0.08, length // 3)
                for note in chord_notes:
                    chords.add(at(base + s), _tone(_midi_hz(note), length, p["chord_wave"], cutoff, rng) * env, 0.2)
        for s in lead_steps:
            degree = lead_degrees[s] + (int(rng.integers(-2, 3)) if rng.random() < 0.15 else 0)
            length = at(2)
            env = _envelope(length, 30, 0.2, length // 3)
            note = degree_note(chord_degree + degree) + 24
            lead.add(at(base + s), _tone(_midi_hz(note), length, p["lead_wave"], cutoff * 1.5, rng) * env, 0.22)

    mix = drums.buf + bass.buf + chords.buf + lead.buf
    peak = np.abs(mix).max()
    mix = mix * (rng.uniform(0.5, 0.9) / peak) if peak > 0 else mix
    return Song(audio=mix.astype(np.float32), tempo_bpm=tempo_bpm, tsig=tsig, bars=bars, style=style.id)


def random_song(styles: list[Style], seed: int, bars: int, tail_sixteenths: int = 2) -> Song:
    """A song with style, tempo (60-200 BPM, usually near the style's) and meter drawn from the seed."""
    rng = np.random.default_rng([seed, 7])
    style = styles[int(rng.integers(len(styles)))]
    low, high = style.music["tempo_range"]
    tempo = float(rng.uniform(low, high)) if rng.random() < 0.6 else float(np.exp(rng.uniform(np.log(60), np.log(200))))
    tsig = TIME_SIGNATURES[int(rng.choice(4, p=[0.5, 0.17, 0.17, 0.16]))]
    return render_song(style, round(tempo, 2), tsig, bars, int(rng.integers(2**31)), tail_sixteenths)
