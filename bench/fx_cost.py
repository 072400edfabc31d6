"""Cost of a preset's engine part (FX chain + gain) per generated window: one 4/4 bar at 120 BPM,
44.1 kHz stereo, with the 2 s warm-up, for each shipped preset; median of 20 runs against the
bar's real-time length. `python bench/fx_cost.py`"""
from __future__ import annotations

import statistics
import time

import numpy as np

from bridge.presets import load_preset, preset_files

RATE, FRAMES = 44100, 88200


def main() -> None:
    rng = np.random.default_rng(0)
    window = (0.3 * rng.standard_normal((2, FRAMES + 1323))).astype(np.float32)
    context = (0.3 * rng.standard_normal((2, 2 * FRAMES))).astype(np.float32)
    for name, path in preset_files().items():
        sound = load_preset(path).sound
        times = []
        for _ in range(20):
            started = time.perf_counter()
            sound.process(window, RATE, context)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"{name:<14} {len(sound.fx)} effects  {median * 1000:6.1f} ms per bar  "
              f"({FRAMES / RATE / median:.0f}x real time)")


if __name__ == "__main__":
    main()
