"""Hostile plugins against a real engine: the figures of docs/reliability.md.

    .venv/bin/python bench/hostile.py cases            # each case of tests/hostile.py next to a healthy session
    .venv/bin/python bench/hostile.py garbage          # engine RSS under unthrottled sparse 1-frame AUDIO
    .venv/bin/python bench/hostile.py flood            # healthy coverage while refused messages flood in
    .venv/bin/python bench/hostile.py sessions 500     # fds, RSS and healthy coverage with N idle sessions
    .venv/bin/python bench/hostile.py logs             # engine log lines and bytes for 200k refused messages
    .venv/bin/python bench/hostile.py frames --mb 1    # engine RSS under a flood of big frames

Each prints one JSON line per measurement. The healthy session is a realtime loop-generator
session at 120 BPM (tests/hostile.py RealtimeSession); coverage is the share of its blocks that
generated audio covered when the block played.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bridge.client import Client  # noqa: E402
from bridge.shm import SHM_DIR  # noqa: E402
from tests import hostile  # noqa: E402
from tests.conftest import segments_of, start_engine  # noqa: E402


class Engine:
    """A `livediff serve` on a private endpoint, its stderr in a file."""

    def __init__(self, *extra: str):
        self.directory = Path(tempfile.mkdtemp(prefix="ld-hostile-", dir="/tmp"))
        self.endpoint = f"ipc://{self.directory}/engine.sock"
        self.log = self.directory / "engine.log"
        with open(self.log, "wb") as stderr:
            self.process = start_engine(self.endpoint, self.directory, *extra, stderr=stderr).process

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_lines(self) -> tuple[int, int]:
        text = self.log.read_bytes()
        return text.count(b"\n"), len(text)

    def close(self) -> int | None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(20)
            except Exception:
                self.process.kill()
        for name in segments_of(self.process.pid):
            (SHM_DIR / name).unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode


def cases(args) -> None:
    for name in hostile.HOSTILE:
        engine = Engine()
        try:
            healthy = hostile.RealtimeSession(engine.endpoint)
            healthy.play(2.0)
            before = (healthy.blocks, healthy.missed)
            try:
                codes = [e["code"] for e in hostile.send_case(engine.endpoint, name, 0x5EED0000 + len(name), 1.0)]
            except Exception as exc:      # the engine died or stopped answering
                codes = [f"{type(exc).__name__}"]
            healthy.play(args.seconds)
            after = healthy.blocks - before[0], healthy.missed - before[1]
            print(json.dumps({"case": name, "engine_alive": engine.alive, "errors": sorted(set(map(str, codes))),
                              "error_replies": len(codes),
                              "healthy_coverage_after": round(1 - after[1] / max(1, after[0]), 4)}), flush=True)
            healthy.close()
        finally:
            engine.close()


def _garbage_sender(endpoint: str, sessions: int, seconds: float, queue) -> None:
    context = zmq.Context()
    clients = [Client(endpoint, context=context) for _ in range(sessions)]
    for client in clients:
        client.send_raw(hostile.hello(client.instance))
    sent_bytes = sent = 0
    started = time.monotonic()
    positions = hostile.sparse_positions(4000)
    k = 0
    while time.monotonic() - started < seconds:
        for client in clients:
            frame = hostile.audio(client.instance, positions[k % len(positions)])
            try:
                client.socket.send(frame, zmq.NOBLOCK)
                sent += 1
                sent_bytes += len(frame)
            except zmq.Again:
                pass
            while client.socket.poll(0):
                client.socket.recv()
        k += 1
    for client in clients:
        client.close()
    context.term()
    queue.put((sent, sent_bytes))


def garbage(args) -> None:
    engine = Engine()
    try:
        time.sleep(0.5)
        before = hostile.engine_rss_mb(engine.process.pid)
        spawn = multiprocessing.get_context("spawn")
        queue = spawn.Queue()
        sender = spawn.Process(target=_garbage_sender, args=(engine.endpoint, args.sessions, args.seconds, queue))
        sender.start()
        peak = before
        while sender.is_alive() and engine.alive:
            peak = max(peak, hostile.engine_rss_mb(engine.process.pid))
            time.sleep(0.1)
        sent, sent_bytes = queue.get(timeout=30) if engine.alive else (None, None)
        sender.join(30)
        time.sleep(args.settle)
        print(json.dumps({"measure": "garbage_rss", "sessions": args.sessions, "seconds": args.seconds,
                          "messages": sent, "bytes_sent": sent_bytes, "rss_before_mb": round(before, 1),
                          "rss_peak_mb": round(peak, 1),
                          "rss_after_mb": round(hostile.engine_rss_mb(engine.process.pid), 1) if engine.alive else None,
                          "engine_alive": engine.alive}), flush=True)
    finally:
        engine.close()


def flood(args) -> None:
    engine = Engine()
    try:
        healthy = hostile.RealtimeSession(engine.endpoint)
        healthy.play(2.0)
        base = (healthy.blocks, healthy.missed, healthy.longest_gap)
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(args.processes) as pool:
            result = pool.starmap_async(hostile.flood, [(engine.endpoint, args.seconds, args.identities,
                                                         None if args.rate is None else args.rate / args.processes)]
                                        * args.processes)
            healthy.longest_gap = 0.0
            healthy.play(args.seconds)
            sent = sum(result.get(60))
        blocks, missed = healthy.blocks - base[0], healthy.missed - base[1]
        lines, size = engine.log_lines()
        print(json.dumps({"measure": "flood", "seconds": args.seconds, "processes": args.processes,
                          "identities_per_process": args.identities, "messages": sent,
                          "rate_per_s": round(sent / args.seconds), "healthy_coverage": round(1 - missed / max(1, blocks), 4),
                          "healthy_longest_gap_s": round(healthy.longest_gap, 3), "engine_alive": engine.alive,
                          "log_lines": lines, "log_bytes": size, "load_average": os.getloadavg()[0]}), flush=True)
        healthy.close()
    finally:
        engine.close()


def sessions(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.engine_fd_limit), hard))
    engine = Engine()                                    # inherits the fd limit of a default desktop
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.count + 256)), hard))
    context = zmq.Context()
    context.setsockopt(zmq.LINGER, 0)
    context.set(zmq.MAX_SOCKETS, args.count + 64)
    idle, opened, refused = [], 0, 0
    healthy = None
    try:
        time.sleep(0.3)
        fds_before = hostile.engine_fds(engine.process.pid)
        healthy = hostile.RealtimeSession(engine.endpoint)     # first: the idle ones may fill the engine
        for n in range(args.count):
            client = Client(engine.endpoint, context=context)
            client.send_raw(hostile.hello(client.instance))
            idle.append(client)
        deadline = time.monotonic() + 30
        for client in idle:
            reply = None
            while engine.alive and (left := deadline - time.monotonic()) > 0:
                reply = client.recv(min(left, 1.0))
                if reply is not None and reply["type"] != 17:
                    break
            opened += reply is not None and reply["type"] == 16
            refused += reply is not None and reply["type"] == 18
        fds = hostile.engine_fds(engine.process.pid) if engine.alive else None
        rss = hostile.engine_rss_mb(engine.process.pid) if engine.alive else None
        for _ in range(int(args.seconds / 2)):
            for client in idle:
                client.send("params", params={})     # keep-alive
            healthy.play(2.0)
        print(json.dumps({"measure": "sessions", "idle_sessions": args.count, "welcomed": opened, "refused": refused,
                          "engine_fds_before": fds_before, "engine_fds": fds, "engine_rss_mb": rss,
                          "engine_alive": engine.alive, "healthy_coverage": round(healthy.coverage, 4)}), flush=True)
    finally:
        if healthy:
            healthy.close()
        for client in idle:
            client.close()
        context.term()
        engine.close()


def logs(args) -> None:
    engine = Engine()
    try:
        time.sleep(0.3)
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1) as pool:
            sent = pool.apply(hostile.flood, (engine.endpoint, args.seconds, 1, args.rate))
        time.sleep(1.0)
        lines, size = engine.log_lines()
        print(json.dumps({"measure": "logs", "messages": sent, "log_lines": lines, "log_bytes": size,
                          "engine_alive": engine.alive}), flush=True)
    finally:
        engine.close()


def frames(args) -> None:
    engine = Engine()
    try:
        time.sleep(0.5)
        before = peak = hostile.engine_rss_mb(engine.process.pid)
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1) as pool:
            result = pool.apply_async(hostile.big_frames, (engine.endpoint, args.seconds, args.mb, args.connections))
            while not result.ready() and engine.alive:
                peak = max(peak, hostile.engine_rss_mb(engine.process.pid))
                time.sleep(0.05)
            sent = result.get(60)
        time.sleep(1.0)
        print(json.dumps({"measure": "big_frames", "mb": args.mb, "connections": args.connections,
                          "seconds": args.seconds, "frames": sent, "rss_before_mb": round(before, 1),
                          "rss_peak_mb": round(peak, 1), "rss_after_mb": round(hostile.engine_rss_mb(engine.process.pid), 1),
                          "engine_alive": engine.alive}), flush=True)
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cases")
    p.add_argument("--seconds", type=float, default=10.0, help="healthy play after the case was sent")
    p.set_defaults(run=cases)
    p = sub.add_parser("garbage")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.set_defaults(run=garbage)
    p = sub.add_parser("flood")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--identities", type=int, default=1)
    p.add_argument("--rate", type=float, help="messages/s in total (default: as fast as possible)")
    p.set_defaults(run=flood)
    p = sub.add_parser("sessions")
    p.add_argument("count", type=int)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--engine-fd-limit", type=int, default=1024, help="soft RLIMIT_NOFILE the engine starts with")
    p.set_defaults(run=sessions)
    p = sub.add_parser("logs")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=10000.0)
    p.set_defaults(run=logs)
    p = sub.add_parser("frames")
    p.add_argument("--mb", type=float, default=1.0, help="frame size in MiB (the limit is 1 MiB + 64 KiB)")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.set_defaults(run=frames)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
