"""Cost of publishing one generated window into the shared-memory timeline store (seqlock
write of slot header + audio copy), engine side, as the scheduler does it.

    .venv/bin/python bench/bridge_publish.py
"""
from __future__ import annotations

import time

import numpy as np

from bridge.shm import TimelineStore
from engine.publisher import WindowKind

RATE = 48000


def publish_cost(bars: int, runs: int = 200) -> float:
    frames = bars * 2 * RATE  # 4/4 at 120 BPM: 2 s per bar
    store = TimelineStore(0xbe7c, 2, RATE)
    audio = np.random.default_rng(0).uniform(-1, 1, (2, frames)).astype(np.float32)
    costs = []
    try:
        for n in range(runs):
            store.set_playhead(0, n * frames)  # the previous window is behind the playhead: reusable
            started = time.perf_counter_ns()
            store.publish(epoch=0, start_sample=n * frames, bar_index=n * bars, start_beat=n * bars * 4.0,
                          tempo_bpm=120.0, kind=WindowKind.GENERATED, grid=0, audio=audio)
            costs.append(time.perf_counter_ns() - started)
    finally:
        store.close()
    return float(np.median(costs[runs // 10:])) / 1e3


if __name__ == "__main__":
    for bars in (1, 4):
        print(f"publish a {bars}-bar window (120 BPM, 48 kHz stereo, {bars * 2 * RATE} frames): "
              f"median {publish_cost(bars):.0f} us")
