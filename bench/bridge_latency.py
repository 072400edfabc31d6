"""Shim -> engine message latency on loopback: a DEALER sends real TRANSPORT and AUDIO
messages (one pair per 512-frame stereo block, every 2 ms); the engine process runs the real
Engine.handle (decode, validate, hand to the scheduler) and timestamps when that returns.
Latency = handled - sent (both CLOCK_MONOTONIC, comparable across processes); the send
stamp travels in an extra map key, which the protocol ignores.

    .venv/bin/python bench/bridge_latency.py [--blocks 3000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import msgpack
import numpy as np

STAMP_KEY = 1000  # not an LD_KEY_*: ignored by the engine, read back by this benchmark
FRAMES, CHANNELS, RATE, TEMPO = 512, 2, 48000, 120.0


def receiver(endpoint: str, messages: int) -> None:
    from bridge.server import Engine
    from bridge.server import GIL_SWITCH_SECONDS
    engine = Engine(endpoint)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # as Engine.serve does
    engine.socket.bind(endpoint)
    engine._bound = True
    engine.scheduler.start()
    print("ready", flush=True)
    latencies, handle_costs = [], []
    for _ in range(messages + 1):  # + the hello
        frames = engine.socket.recv_multipart()
        received = time.monotonic_ns()
        engine.handle(frames[0], frames[1:])
        done = time.monotonic_ns()
        stamp = msgpack.unpackb(frames[1], strict_map_key=False).get(STAMP_KEY)
        if stamp is not None:
            latencies.append(done - stamp)
            handle_costs.append(done - received)
    engine.close()
    print(json.dumps({"latency_ns": latencies, "handle_ns": handle_costs}), flush=True)


def stamped(msg_type: str, **fields) -> bytes:
    from bridge import protocol
    body = msgpack.unpackb(protocol.encode(msg_type, **fields), strict_map_key=False)
    body[STAMP_KEY] = time.monotonic_ns()
    return msgpack.packb(body, use_bin_type=True)


def measure(endpoint: str, blocks: int) -> dict:
    from bridge.client import Client
    from bridge.layout import const
    process = subprocess.Popen([sys.executable, __file__, "--receiver", endpoint, str(2 * blocks)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    client = Client(endpoint)
    client.hello(RATE, CHANNELS, generator=const("LD_GENERATOR_LOOP"))
    audio = np.random.default_rng(0).uniform(-1, 1, (CHANNELS, FRAMES)).astype("<f4").tobytes()
    flags = const("LD_TRANSPORT_PLAYING") | const("LD_TRANSPORT_TEMPO_VALID") | const("LD_TRANSPORT_TSIG_VALID")
    for block in range(blocks):
        pos = block * FRAMES
        beats = pos * TEMPO / 60 / RATE
        client.send_raw(stamped("transport", instance=client.instance, epoch=0, flags=flags, tempo=TEMPO,
                                pos_samples=pos, pos_beats=beats, bar_start_beats=beats // 4 * 4, tsig_num=4,
                                tsig_den=4, loop_start_beats=0.0, loop_end_beats=0.0, process_mode=0, underruns=0,
                                offline_timeouts=0, dropped_frames=0, grid=0))
        client.send_raw(stamped("audio", instance=client.instance, epoch=0, pos_samples=pos, pos_beats=beats,
                                tempo=TEMPO, frames=FRAMES, channels=CHANNELS, input=audio, sidechain=None))
        time.sleep(0.002)
    result = json.loads(process.stdout.readline())
    process.wait(10)
    client.close()
    skip = len(result["latency_ns"]) // 10  # warm-up
    latency = np.array(result["latency_ns"][skip:]) / 1e3
    handle = np.array(result["handle_ns"][skip:]) / 1e3
    return {"p50_us": np.percentile(latency, 50), "p99_us": np.percentile(latency, 99),
            "handle_p50_us": np.percentile(handle, 50), "messages": latency.size}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=3000)
    parser.add_argument("--receiver", nargs=2, metavar=("ENDPOINT", "MESSAGES"))
    args = parser.parse_args()
    if args.receiver:
        receiver(args.receiver[0], int(args.receiver[1]))
        return
    with tempfile.TemporaryDirectory(prefix="ldb-", dir="/tmp") as directory:
        for name, endpoint in [("ipc", f"ipc://{directory}/engine.sock"), ("tcp", "tcp://127.0.0.1:47831")]:
            r = measure(endpoint, args.blocks)
            print(f"{name}: transport+audio message latency p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us; "
                  f"engine decode+validate+record p50 {r['handle_p50_us']:.0f} us ({r['messages']} messages)")


if __name__ == "__main__":
    main()
