"""Cost of a preset's engine part (FX chain + gain) per generated window: one 4/4 bar at 120 BPM,
44.1 kHz stereo, with the chain's warm-up (its measured tail, 1-6 s, `engine.fx.warmup_seconds`,
started on the LFOs' period in song time),
for each shipped preset; median of 20 runs against the bar's real-time length. `python bench/fx_cost.py`"""
from __future__ import annotations

import statistics
import time

import numpy as np

from bridge.presets import load_preset, preset_files
from engine.fx import warmup_seconds

RATE, FRAMES = 44100, 88200


def main() -> None:
    rng = np.random.default_rng(0)
    window = (0.3 * rng.standard_normal((2, FRAMES + 1323))).astype(np.float32)
    context = (0.3 * rng.standard_normal((2, 4 * FRAMES))).astype(np.float32)     # 4 bars: room for any warm-up
    for name, path in preset_files().items():
        sound = load_preset(path).sound
        times = []
        for i in range(20):
            started = time.perf_counter()
            sound.process(window, RATE, context, position=(4 + i) * FRAMES)   # bars 4..23: LFO alignment varies
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"{name:<14} {len(sound.fx)} effects  warm-up {warmup_seconds(sound.fx, RATE):.2f} s  "
              f"{median * 1000:6.1f} ms per bar  "
              f"({FRAMES / RATE / median:.0f}x real time)")


if __name__ == "__main__":
    main()
