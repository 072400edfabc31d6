"""Cost of re-placing a session's windows when a ramp moves the grid every block: the socket
thread's `placement.replace` over real shared memory, 48 kHz stereo, 1-bar windows, the tempo
rising by 0.05 BPM per 512-frame block (every window moves each time).

    .venv/bin/python bench/replace_cost.py [--tempo 90] [--lookahead 2] [--blocks 400]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bridge.convert import new_session
from bridge.shm import TimelineStore
from engine import placement, planner, transport_state
from engine.publisher import WindowKind
from engine.session import Window, made_for
from engine.transport import TransportSnapshot

RATE, BLOCK = 48000, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tempo", type=float, default=90.0)
    parser.add_argument("--lookahead", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=400)
    args = parser.parse_args()
    store = TimelineStore(1, 2, RATE)
    s = new_session(1, RATE, 2, store, offline=False, generator="loop", lookahead=args.lookahead)

    def transport(pos: int, tempo: float, beats: float, grid: int) -> None:
        transport_state.on_transport(s, TransportSnapshot(
            epoch=0, playing=True, tempo=tempo, pos_samples=pos, pos_beats=beats, bar_start_beats=beats // 4 * 4,
            tsig_num=4, tsig_den=4, offline=False, grid=grid), 0.0, lambda *_: None)

    try:
        transport(0, args.tempo, 0.0, 1)
        for target in planner.targets(s):
            audio = np.full((2, target.frames + 240), 0.25, np.float32)
            window = Window(target.bar, WindowKind.GENERATED, audio, made_for(s.grid, target.bar, args.tempo, (4, 4)),
                            grid=s.grid_seq)
            assert placement.place(s, window, target, "generate", lambda *_: None)
            s.windows[target.bar] = window
        pos, beats, tempo, times = BLOCK, BLOCK * args.tempo / 60 / RATE, args.tempo, []
        for k in range(args.blocks):
            tempo += 0.05
            started = time.perf_counter()
            transport(pos, tempo, beats, k + 2)
            times.append(time.perf_counter() - started)
            pos, beats = pos + BLOCK, beats + BLOCK * tempo / 60 / RATE
        print(f"{len(s.windows)} windows, {args.blocks} blocks: replace median {statistics.median(times) * 1e3:.2f} ms, "
              f"p90 {sorted(times)[int(0.9 * len(times))] * 1e3:.2f} ms; a block lasts {BLOCK / RATE * 1e3:.1f} ms")
    finally:
        store.close()


if __name__ == "__main__":
    main()
