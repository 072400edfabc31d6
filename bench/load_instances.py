"""Many plugin instances on one engine: how many play at 120 BPM with 1-bar windows and no
missed deadline. Each simulated instance is a realtime harness client in this process that
sends TRANSPORT + AUDIO for every block at the wall-clock pace (all instances share the host's
transport, so their bar lines coincide, as tracks in a DAW do) and, like the shim's audio
thread, checks whether generated audio covers that block in its shared memory. A block not
covered after the first bar (the preroll is published at once) is a missed deadline.

    .venv/bin/python bench/load_instances.py --generator loop --instances 8 16 --seconds 120
    .venv/bin/python bench/load_instances.py --generator diffusion --instances 2 3 4 --seconds 120
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.client import Client, engine_answers  # noqa: E402
from bridge.layout import const  # noqa: E402
from bridge.shm import TimelineReader  # noqa: E402

RATE, BLOCK, TEMPO = 48000, 2048, 120.0
BAR = 4 * 60 * RATE // int(TEMPO)
GENERATORS = {"loop": const("LD_GENERATOR_LOOP"), "diffusion": const("LD_GENERATOR_DIFFUSION")}


def spawn_engine(window_log: Path) -> tuple[subprocess.Popen, str]:
    directory = tempfile.mkdtemp(prefix="ld-bench-", dir="/tmp")
    endpoint = f"ipc://{directory}/engine.sock"
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--endpoint", endpoint,
                                "--window-log", str(window_log), "--log-level", "WARNING"],
                               cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 30
    while not engine_answers(endpoint, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the engine did not start")
    return process, endpoint


def stop_engine(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


class Instance:
    def __init__(self, endpoint: str, generator: str, context: zmq.Context, seed: int):
        self.client = Client(endpoint, context=context)
        welcome = self.client.hello(RATE, 2, max_block=BLOCK, generator=GENERATORS[generator], seed=seed)
        self.reader = TimelineReader(welcome["shm_name"])
        self.noise = np.random.default_rng(seed).uniform(-0.1, 0.1, (2, BAR)).astype(np.float32)

    def block(self, pos: int) -> bool:
        self.client.transport(pos_samples=pos, tempo=TEMPO, epoch=1)
        start = pos % BAR
        audio = np.take(self.noise, np.arange(start, start + BLOCK) % BAR, axis=1)
        self.client.audio(pos_samples=pos, tempo=TEMPO, audio=audio, epoch=1)
        return self.reader.covers(1, pos, BLOCK)

    def close(self) -> None:
        self.client.bye()
        self.reader.close()
        self.client.close()


def run(count: int, generator: str, seconds: float, warmup_bars: int) -> dict:
    log = Path(tempfile.mkdtemp(prefix="ld-bench-log-")) / "windows.jsonl"
    process, endpoint = spawn_engine(log)
    context = zmq.Context()
    instances = []
    try:
        instances = [Instance(endpoint, generator, context, seed) for seed in range(count)]
        time.sleep(3.0 if generator == "diffusion" else 0.3)     # let the generator load
        missed, blocks, late_after = 0, 0, warmup_bars * BAR
        first_missed = None
        started = time.monotonic()
        pos = 0
        while pos < seconds * RATE:
            for instance in instances:
                ok = instance.block(pos)
                if pos >= late_after:
                    blocks += 1
                    if not ok:
                        missed += 1
                        first_missed = first_missed if first_missed is not None else pos / RATE
            pos += BLOCK
            time.sleep(max(0.0, started + pos / RATE - time.monotonic()))
        behind = time.monotonic() - started - pos / RATE
    finally:
        for instance in instances:
            instance.close()
        context.term()
        stop_engine(process)
    windows = [json.loads(line) for line in log.read_text().splitlines()]
    generated = [w for w in windows if w["kind"] == "generate" and w["flags"] == const("LD_WINDOW_GENERATED")]
    leads = np.array([w["lead_seconds"] for w in generated if w["bar_index"] > warmup_bars])
    return {"instances": count, "generator": generator, "seconds": seconds, "blocks_checked": blocks,
            "missed_blocks": missed, "first_missed_s": first_missed,
            "late_windows": sum(w.get("late", False) for w in generated),
            "windows": len(generated), "lead_s_min": round(float(leads.min()), 3) if len(leads) else None,
            "lead_s_median": round(float(np.median(leads)), 3) if len(leads) else None,
            "host_behind_s": round(behind, 3), "load_average": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="loop")
    parser.add_argument("--instances", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup-bars", type=int, default=2, help="bars at the start not counted (preroll)")
    args = parser.parse_args()
    for count in args.instances:
        print(json.dumps(run(count, args.generator, args.seconds, args.warmup_bars)), flush=True)


if __name__ == "__main__":
    main()
