"""How far per-window FX are from the same chain run over the whole stream: a 16-bar ambient song
at 120 BPM, 44.1 kHz stereo, cut into 1-bar windows, each processed after a warm-up on the 2 bars
before it (its context), as the engine does; the error (window - stream, dB against the stream's
power) is the median over bars 4-14: as the engine does it (the warm-up as long as the chain's
tail, `engine.fx.warmup_seconds`, starting on the LFOs' period in song time), with LFOs that
start at each window's warm-up, and with the fixed 1 s warm-up used before. `python bench/fx_seams.py`"""
from __future__ import annotations

from unittest import mock

import numpy as np

from bridge.presets import find_preset
from engine import fx
from engine.music import render_song
from engine.styles import load_styles

RATE, BAR = 44100, 2 * 44100
CHAINS = {
    "ambient preset": find_preset("ambient").sound.fx,
    "Phaser 0.5 Hz + Chorus 1 Hz": fx.parse_chain([{"plugin": "Phaser", "rate_hz": 0.5}, {"plugin": "Chorus"}], "bench"),
    "Reverb room 0.95, wet 0.5, dry 0.5": fx.parse_chain(
        [{"plugin": "Reverb", "room_size": 0.95, "wet_level": 0.5, "dry_level": 0.5}], "bench"),
    "Delay 0.5 s, feedback 0.7, mix 0.5": fx.parse_chain(
        [{"plugin": "Delay", "delay_seconds": 0.5, "feedback": 0.7, "mix": 0.5}], "bench"),
}


def error_db(chain, song: np.ndarray, aligned: bool = True) -> float:
    whole = fx.apply(chain, song, RATE)
    errors = []
    for k in range(4, 15):
        window = fx.apply(chain, song[:, k * BAR:(k + 1) * BAR], RATE, warmup=song[:, (k - 2) * BAR:k * BAR],
                          position=k * BAR if aligned else None)
        reference = whole[:, k * BAR:(k + 1) * BAR]
        errors.append(10 * np.log10(np.mean((window - reference) ** 2) / np.mean(reference ** 2)))
    return float(np.median(errors))


def main() -> None:
    ambient = next(s for s in load_styles() if s.name == "ambient")
    song = np.asarray(render_song(ambient, 120.0, (4, 4), 16, 5, sample_rate=RATE, stereo=True).audio, np.float32)
    for name, chain in CHAINS.items():
        tail, unaligned = error_db(chain, song), error_db(chain, song, aligned=False)
        with mock.patch.object(fx, "warmup_seconds", lambda chain, rate: 1.0):
            fixed = error_db(chain, song, aligned=False)
        print(f"{name:<36} warm-up {fx.warmup_seconds(chain, RATE):.2f} s: {tail:6.1f} dB   (LFOs not aligned: "
              f"{unaligned:6.1f} dB; fixed 1 s before: {fixed:6.1f} dB)")


if __name__ == "__main__":
    main()
