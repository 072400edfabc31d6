"""Seek -> first generated audio at the new position. One realtime harness instance plays at
120 BPM (blocks of 2048 frames, wall-clock paced); every few bars it seeks to a bar it has
heard (a new epoch, mid-bar), while `--others` instances keep playing and loading the engine.
Latency = from sending the seek's TRANSPORT to generated audio (LD_WINDOW_GENERATED) of the
new epoch covering the new position in shared memory, polled every 0.5 ms.

    .venv/bin/python bench/seek_latency.py --generator loop --seeks 20
    .venv/bin/python bench/seek_latency.py --generator diffusion --seeks 10 --others 3
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from load_instances import BAR, BLOCK, RATE, TEMPO, Instance, spawn_engine, stop_engine

from bridge.layout import const


def generated_at(instance: Instance, epoch: int, pos: int) -> bool:
    slots = instance.reader.header.slots
    for i in range(instance.reader.header.slot_count):
        slot = slots[i]
        seq = slot.seq
        if (not seq & 1 and slot.state == const("LD_SLOT_READY") and slot.epoch == epoch
                and slot.flags == const("LD_WINDOW_GENERATED")
                and slot.start_sample <= pos < slot.start_sample + slot.frames and slot.seq == seq):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=["loop", "diffusion"], default="loop")
    parser.add_argument("--seeks", type=int, default=20)
    parser.add_argument("--others", type=int, default=0, help="instances playing meanwhile")
    args = parser.parse_args()
    process, endpoint = spawn_engine(Path(tempfile.mkdtemp(prefix="ld-bench-log-")) / "windows.jsonl")
    context = zmq.Context()
    seeker = Instance(endpoint, args.generator, context, 100)
    others = [Instance(endpoint, args.generator, context, seed) for seed in range(args.others)]
    rng = random.Random(1)
    latencies = []
    try:
        time.sleep(3.0 if args.generator == "diffusion" else 0.3)
        epoch, pos, others_pos, blocks = 1, 0, 0, 0
        started = time.monotonic()

        def play_block(instance, epoch, position):
            instance.client.transport(pos_samples=position, tempo=TEMPO, epoch=epoch)
            start = position % BAR
            audio = np.take(instance.noise, np.arange(start, start + BLOCK) % BAR, axis=1)
            instance.client.audio(pos_samples=position, tempo=TEMPO, audio=audio, epoch=epoch)

        for _ in range(args.seeks):
            for _ in range(int(3 * BAR / BLOCK)):                        # play three bars
                play_block(seeker, epoch, pos)
                for other in others:
                    play_block(other, 1, others_pos)
                pos, others_pos, blocks = pos + BLOCK, others_pos + BLOCK, blocks + 1
                time.sleep(max(0.0, started + blocks * BLOCK / RATE - time.monotonic()))
            # seek to a random heard bar >= 2 (earlier ones are preroll), somewhere inside it
            pos = rng.randrange(2, max(3, others_pos // BAR)) * BAR + rng.randrange(0, BAR - BLOCK)
            epoch += 1
            sent = time.monotonic()
            play_block(seeker, epoch, pos)
            while not generated_at(seeker, epoch, pos) and time.monotonic() - sent < 5:
                time.sleep(0.0005)
            latencies.append(time.monotonic() - sent)
            pos += BLOCK
    finally:
        for instance in [seeker, *others]:
            instance.close()
        context.term()
        stop_engine(process)
    ms = np.array(latencies) * 1000
    print(json.dumps({"generator": args.generator, "others": args.others, "seeks": len(ms),
                      "median_ms": round(float(np.median(ms)), 1), "max_ms": round(float(ms.max()), 1),
                      "p90_ms": round(float(np.percentile(ms, 90)), 1)}))


if __name__ == "__main__":
    main()
