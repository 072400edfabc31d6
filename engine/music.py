"""Procedural, seedable music for training and evaluating the built-in model.

A *song* is a few bars in one style, tempo and time signature, built from one drum kit,
one bass line, one chord progression and one lead motif chosen from the seed. Every bar
plays the same parts with bar-to-bar variation (chord changes, fills on the last bar of a
4-bar phrase, drops where drums and bass rest, small melodic changes), so the right
continuation depends visibly on the context. Every note starts on the 16th-note grid.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from engine.styles import Style
from engine.representation import SAMPLE_RATE, TRAINED_METERS, beat_starts, sixteenths_per_bar

# 16th-note positions of snare backbeats where the generic rule (every other beat) is not the idiom
BACKBEATS = {(3, 4): (4, 8), (7, 8): (8,)}
# how often each meter is drawn for a training song
METER_WEIGHTS = (0.34, 0.12, 0.12, 0.1, 0.08, 0.06, 0.06, 0.06, 0.03, 0.03)


def backbeats(tsig: tuple[int, int]) -> tuple[int, ...]:
    return BACKBEATS.get(tuple(tsig)) or beat_starts(tsig)[1::2] or beat_starts(tsig)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}
CHORD_DEGREES = {"triad": (0, 2, 4), "seventh": (0, 2, 4, 6), "power": (0, 4, 7)}


@dataclass(frozen=True)
class Song:
    audio: np.ndarray           # float32, [n] mono (or [2, n] stereo) at sample_rate, bars (+ tail) long
    tempo_bpm: float
    tsig: tuple[int, int]
    bars: int
    style: int
    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class Note:
    part: str                   # "drums", "bass", "chords", "lead"
    start: int                  # sample at the song's rate
    length: int                 # samples
    pitch: int                  # MIDI note (General MIDI drum note for drums)
    gain: float                 # the synthesiser's gain (velocity included)
    pan: float                  # -1 (left) .. 1 (right)


# General MIDI percussion notes of the synthesised kit
GM_DRUMS = {"kick": 36, "snare": 38, "hat": 42, "open_hat": 46}


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _tone(freq: float, n: int, wave: str, cutoff_hz: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Band-limited oscillator: additive harmonics up to min(cutoff, Nyquist), so brightness is free."""
    harmonics = max(1, min(40, int(min(cutoff_hz, rate * 0.45) / freq)))
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
    idx = ((start + freq * np.arange(n) / rate) % 1.0 * table_size).astype(np.int64)
    return table[idx]


def _envelope(n: int, attack: int, decay_s: float, release: int, rate: int) -> np.ndarray:
    t = np.arange(n)
    env = np.minimum(1.0, (t + 1) / max(1, attack)) * np.exp(-t / (decay_s * rate))
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


def _kick(kit: _Kit, n: int, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    freq = kit.kick_hz + 120.0 * np.exp(-t * 40.0)
    return np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / kit.kick_decay)


def _snare(kit: _Kit, n: int, rng: np.random.Generator, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    noise = np.diff(rng.standard_normal(n + 1))
    return (0.5 * noise * np.exp(-t / kit.snare_decay) + 0.6 * np.sin(2 * np.pi * kit.snare_hz * t) * np.exp(-t / 0.05))


def _hat(kit: _Kit, n: int, rng: np.random.Generator, open_hat: bool, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    noise = np.diff(rng.standard_normal(n + 2), 2) * 0.3
    return noise * np.exp(-t / (kit.hat_decay * (5.0 if open_hat else 1.0)))


class _Track:
    """A stereo buffer that notes are added into at a pan position (clipped at the buffer's ends).
    With a `score`, each note is also written down as a Note (engine/sampled.py plays them)."""

    def __init__(self, n: int, part: str, score: list | None):
        self.buf = np.zeros((2, n))
        self.part, self.score = part, score

    def add(self, start: int, sound: np.ndarray, gain: float, pan: float = 0.0, note: int = 0) -> None:
        if self.score is not None:
            self.score.append(Note(self.part, max(0, start), len(sound), note, gain, pan))
        start = max(0, start)
        end = min(self.buf.shape[1], start + len(sound))
        if end > start:
            left, right = np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)  # equal-power pan
            self.buf[0, start:end] += gain * left * np.sqrt(2) * sound[: end - start]
            self.buf[1, start:end] += gain * right * np.sqrt(2) * sound[: end - start]


def _voice_lead(notes: list[int], previous: list[int] | None) -> list[int]:
    """The voicing of `notes` (each moved by an octave or not) closest to the previous chord and
    compact: chords move by small steps, as a keyboard player's hands do."""
    if not previous:
        return notes
    centre = float(np.mean(previous))
    options = (sorted(n + shift for n, shift in zip(notes, shifts))
               for shifts in itertools.product((-12, 0, 12), repeat=len(notes)))
    return min(options, key=lambda chord: abs(float(np.mean(chord)) - centre) + 0.3 * (max(chord) - min(chord)))


def render_song(style: Style, tempo_bpm: float, tsig: tuple[int, int], bars: int, seed: int,
                tail_sixteenths: int = 2, sample_rate: int = SAMPLE_RATE, stereo: bool = False,
                score: list | None = None) -> Song:
    """Render `bars` bars (+ a short tail) of the style. Same arguments, same audio; the
    music (notes, timing, velocities) does not depend on the rate or on stereo.

    Played like a band, not a sequencer: every note is a few ms early or late and its velocity
    varies; chords move by voice leading; the song has 8-bar sections (the second one has its
    own progression and lead motif), fills at the end of 4- and 8-bar phrases, and drops."""
    p = style.music
    rng = np.random.default_rng(seed)
    feel = np.random.default_rng([seed, 1])   # humanisation and panning: their own stream
    rate = int(sample_rate)
    bar_len = sixteenths_per_bar(*tsig)
    sixteenth = rate * 15.0 / tempo_bpm
    total_sixteenths = bars * bar_len + tail_sixteenths
    n = int(np.ceil(total_sixteenths * sixteenth))
    at = lambda step: int(round(step * sixteenth))  # noqa: E731 - sample index of a 16th step
    tight = 0.002 + 0.004 * feel.random()     # timing spread (s): a tight or a loose player
    played = lambda step, spread=1.0: at(step) + int(round(feel.normal(0.0, tight * spread) * rate))  # noqa: E731
    velocity = lambda: float(np.clip(feel.normal(1.0, 0.1), 0.6, 1.3))  # noqa: E731

    kit = _Kit(kick_hz=rng.uniform(42, 62), kick_decay=rng.uniform(0.12, 0.35), snare_hz=rng.uniform(150, 240),
               snare_decay=rng.uniform(0.06, 0.18), hat_decay=rng.uniform(0.015, 0.04))
    beats = beat_starts(tsig)
    snares = backbeats(tsig)
    kick_steps = {0} | {s for s in range(0, bar_len, 2) if rng.random() < p["kick_density"]}
    if p["four_on_floor"]:
        kick_steps |= set(beats)
    hat_every = 16 // p["hat_rate"] if p["hat_rate"] else 0
    hat_steps = {s for s in range(0, bar_len, hat_every) if rng.random() < p["hat_density"]} if hat_every else set()
    open_hat_steps = {s for s in hat_steps if s % 4 == 2 and rng.random() < p["open_hat"]}
    bass_steps = sorted({0} | {s for s in range(bar_len) if rng.random() < p["bass_density"] * (1.0 if s % 2 == 0 else 0.4)})
    chord_steps = sorted({0} | {s for s in range(2, bar_len, 2) if rng.random() < 0.35})

    def motif() -> dict[int, int]:
        steps = sorted(s for s in range(bar_len) if rng.random() < p["lead_density"] * (1.0 if s % 2 == 0 else 0.5))
        return {s: int(rng.integers(0, 7)) for s in steps}

    motifs = (motif(), motif())               # section A and section B
    scale = SCALES[p["scale"]]
    root = 36 + int(rng.integers(0, 12))
    progressions = ([0] + [int(rng.choice([1, 2, 3, 4, 5, 6])) for _ in range(3)],
                    [int(rng.choice([3, 4, 5])) ] + [int(rng.choice([0, 1, 2, 3, 4, 5, 6])) for _ in range(3)])
    degree_note = lambda degree: root + 12 * (degree // 7) + scale[degree % 7]  # noqa: E731
    cutoff = p["brightness_hz"] * rng.uniform(0.8, 1.25)
    drops = {b for b in range(1, bars) if rng.random() < p["drop_prob"]}
    pans = {"hat": feel.uniform(-0.6, 0.6), "lead": feel.uniform(-0.4, 0.4), "chord": feel.uniform(0.3, 0.8)}

    drums, bass, chords, lead = (_Track(n, part, score) for part in ("drums", "bass", "chords", "lead"))
    voicing = None
    for bar in range(bars + 1):  # one extra bar so the tail is filled
        base = bar * bar_len
        section = (bar // 8) % 2
        chord_degree = progressions[section][bar % 4]
        fill = (bar % 8 == 7) or (bar % 4 == 3 and rng.random() < p["fill_prob"])
        dropped = bar in drops
        if not dropped:
            for s in range(bar_len):
                accent = 1.0 if s in beats else 0.7
                if s in kick_steps and not (fill and s >= bar_len - 4):
                    drums.add(played(base + s, 0.5), _kick(kit, at(2.5), rate), 0.9 * accent * velocity(),
                              note=GM_DRUMS["kick"])
                if s in snares or (fill and s >= bar_len - 4):
                    gain = 0.7 if not fill or s < bar_len - 4 else 0.35 + 0.1 * (s - bar_len + 4)
                    drums.add(played(base + s, 0.7), _snare(kit, at(2.0), rng, rate), gain * velocity(),
                              note=GM_DRUMS["snare"])
                if s in hat_steps:
                    drums.add(played(base + s), _hat(kit, at(2.0), rng, s in open_hat_steps, rate),
                              0.35 * accent * velocity(), pans["hat"],
                              note=GM_DRUMS["open_hat" if s in open_hat_steps else "hat"])
            for i, s in enumerate(bass_steps):
                length = at((bass_steps[i + 1] if i + 1 < len(bass_steps) else bar_len) - s)
                note = degree_note(chord_degree) + (7 if rng.random() < 0.15 else 0) + (12 if rng.random() < 0.1 else 0)
                env = _envelope(length, 40 * rate // SAMPLE_RATE, 0.25, min(200, length // 4), rate)
                bass.add(played(base + s), _tone(_midi_hz(note), length, p["bass_wave"], cutoff * 0.5, rng, rate) * env,
                         0.5 * velocity(), note=note)
        chord_notes = [degree_note(chord_degree + d) + 12 if p["chord_type"] != "power"
                       else degree_note(chord_degree) + 12 + d for d in CHORD_DEGREES[p["chord_type"]]]
        voicing = _voice_lead(chord_notes, voicing)
        spread = [pans["chord"] * (1 if k % 2 else -1) for k in range(len(voicing))]  # voices across the stereo field
        if p["chord_mode"] == "pad":
            length = at(bar_len)
            env = _envelope(length, int(0.03 * rate), 4.0, length // 6, rate)
            for note, pan in zip(voicing, spread):
                chords.add(at(base), _tone(_midi_hz(note), length, p["chord_wave"], cutoff, rng, rate) * env, 0.18, pan,
                           note=note)
        elif p["chord_mode"] == "stab":
            for s in chord_steps:
                length = at(1.5)
                env = _envelope(length, 20 * rate // SAMPLE_RATE, 0.08, length // 3, rate)
                gain = 0.2 * velocity()
                start = played(base + s)
                for note, pan in zip(voicing, spread):
                    chords.add(start, _tone(_midi_hz(note), length, p["chord_wave"], cutoff, rng, rate) * env, gain, pan,
                               note=note)
        for s, degree in motifs[section].items():
            degree = degree + (int(rng.integers(-2, 3)) if rng.random() < 0.15 else 0)
            length = at(2)
            env = _envelope(length, 30 * rate // SAMPLE_RATE, 0.2, length // 3, rate)
            note = degree_note(chord_degree + degree) + 24
            lead.add(played(base + s), _tone(_midi_hz(note), length, p["lead_wave"], cutoff * 1.5, rng, rate) * env,
                     0.22 * velocity(), pans["lead"], note=note)

    mix = drums.buf + bass.buf + chords.buf + lead.buf
    if not stereo:
        mix = mix.mean(axis=0)
    peak = np.abs(mix).max()
    mix = mix * (rng.uniform(0.5, 0.9) / peak) if peak > 0 else mix
    return Song(audio=mix.astype(np.float32), tempo_bpm=tempo_bpm, tsig=tsig, bars=bars, style=style.id,
                sample_rate=rate)


def draw_song(styles: list[Style], seed: int) -> tuple[Style, float, tuple[int, int], int]:
    """The style, tempo (60-200 BPM, usually near the style's), meter and note seed a song seed draws."""
    rng = np.random.default_rng([seed, 7])
    style = styles[int(rng.integers(len(styles)))]
    low, high = style.music["tempo_range"]
    tempo = float(rng.uniform(low, high)) if rng.random() < 0.6 else float(np.exp(rng.uniform(np.log(60), np.log(200))))
    tsig = TRAINED_METERS[int(rng.choice(len(TRAINED_METERS), p=METER_WEIGHTS))]
    return style, round(tempo, 2), tsig, int(rng.integers(2**31))


def random_song(styles: list[Style], seed: int, bars: int, tail_sixteenths: int = 2, **render) -> Song:
    """The synthesised song of draw_song(styles, seed)."""
    style, tempo, tsig, notes_seed = draw_song(styles, seed)
    return render_song(style, tempo, tsig, bars, notes_seed, tail_sixteenths, **render)
