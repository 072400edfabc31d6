"""Writes tests/data/loop_100bpm.wav: 8 bars of 4/4 at 100 BPM, 44.1 kHz stereo, 16-bit.

Every beat has its own pitch (no two beats of the loop repeat), so audio placed at the wrong
beat or bar is detectable. Deterministic: the same bytes on every run.
    .venv/bin/python tests/data/make_loop.py
"""
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile

SAMPLE_RATE, BPM, BARS = 44100, 100, 8
BEAT = SAMPLE_RATE * 60 // BPM  # 26460 frames, exact at this rate and tempo
# One pitch per beat, all different: steps of 7 semitones folded into three octaves (7 and 36 are coprime).
PITCHES_HZ = [110.0 * 2 ** ((beat * 7 % 36) / 12) for beat in range(BARS * 4)]


def note(frequency: float, frames: int) -> np.ndarray:
    t = np.arange(frames) / SAMPLE_RATE
    return np.sin(2 * np.pi * frequency * t) * np.exp(-t * 6.0)


def make() -> np.ndarray:
    rng = np.random.default_rng(1234)
    out = np.zeros((2, BARS * 4 * BEAT))
    for beat, pitch in enumerate(PITCHES_HZ):
        start = beat * BEAT
        out[0, start:start + BEAT] += 0.5 * note(pitch, BEAT)
        out[1, start:start + BEAT] += 0.5 * note(pitch * 1.5, BEAT)
        hat = BEAT // 2
        noise = rng.standard_normal(hat // 4) * np.exp(-np.arange(hat // 4) / 300.0)
        out[:, start + hat:start + hat + noise.size] += 0.15 * noise
    return out.astype(np.float32)


if __name__ == "__main__":
    path = Path(__file__).with_name("loop_100bpm.wav")
    with AudioFile(str(path), "w", SAMPLE_RATE, 2, bit_depth=16) as f:
        f.write(make())
    print(f"wrote {path}")
